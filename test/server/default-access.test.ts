/**
 * Deny by default: without a `live-sync:authorize` handler, only
 * `liveSync.public` or `nuxi dev` let subscriptions through, and the server
 * says once at start what to add.
 */
import { describe, expect, it } from 'vitest'
import { defaultAccess, defaultAccessNotice } from '../../src/runtime/server/default-access'

describe('defaultAccess', () => {
  it('lets a registered handler decide, in production and in development, public or not', () => {
    for (const dev of [false, true]) {
      for (const open of [false, true]) expect(defaultAccess({ hasHandler: true, public: open, dev })).toBe('handler')
    }
  })

  it('is closed in production without a handler, open with liveSync.public or in nuxi dev', () => {
    expect(defaultAccess({ hasHandler: false, public: false, dev: false })).toBe('closed')
    expect(defaultAccess({ hasHandler: false, public: true, dev: false })).toBe('public')
    expect(defaultAccess({ hasHandler: false, public: false, dev: true })).toBe('dev-open')
    expect(defaultAccess({ hasHandler: false, public: true, dev: true })).toBe('public')
  })
})

describe('defaultAccessNotice', () => {
  it('says nothing when a handler decides or the app chose public', () => {
    expect(defaultAccessNotice('handler')).toBeNull()
    expect(defaultAccessNotice('public')).toBeNull()
  })

  it('warns in development and errs in production, with the handler to add or the public option', () => {
    const dev = defaultAccessNotice('dev-open')!
    const closed = defaultAccessNotice('closed')!
    expect(dev.level).toBe('warn')
    expect(dev.message).toMatch(/^\[live-sync\] no 'live-sync:authorize' handler is registered: in development every subscription is allowed, but a production build refuses them all\./)
    expect(closed.level).toBe('error')
    expect(closed.message).toMatch(/^\[live-sync\] no 'live-sync:authorize' handler is registered, so every subscription is refused/)
    for (const { message } of [dev, closed]) {
      expect(message).toContain('nitroApp.hooks.hook(\'live-sync:authorize\', async ({ key, request }) =>')
      expect(message).toContain('liveSync: { public: true }')
    }
  })
})
