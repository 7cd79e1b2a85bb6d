/**
 * The socket's security settings: which origins may open it, and the limits
 * as runtime config (and NUXT_LIVE_SYNC_* strings) give them.
 */
import { describe, expect, it } from 'vitest'
import { DEFAULT_LIMITS, isOriginAllowed, parseAllowedOrigins, resolveSecuritySettings } from '../../src/runtime/server/security-settings'

const settings = (allowed: string[] = [], trustProxy = false) => ({ allowedOrigins: new Set(allowed), trustProxy })
const headers = (values: Record<string, string>) => new Headers(values)

describe('isOriginAllowed', () => {
  it('lets an upgrade without an Origin through (not a browser: the authorizer decides)', () => {
    expect(isOriginAllowed(headers({ host: 'app.example.com' }), settings())).toBe(true)
  })

  it('accepts the app\'s own origin, with either scheme (a TLS proxy is invisible), any letter case and the default port', () => {
    for (const origin of ['http://app.example.com', 'https://app.example.com', 'https://APP.example.com', 'https://app.example.com:443']) {
      expect(isOriginAllowed(headers({ origin, host: 'app.example.com' }), settings()), origin).toBe(true)
    }
    expect(isOriginAllowed(headers({ origin: 'http://127.0.0.1:3000', host: '127.0.0.1:3000' }), settings())).toBe(true)
  })

  it('refuses a foreign origin, another port of the same host, a look-alike and "null"', () => {
    for (const origin of ['https://evil.example', 'http://127.0.0.1:3001', 'https://app.example.com.evil.example', 'null', 'file://', 'not an origin']) {
      expect(isOriginAllowed(headers({ origin, host: origin.includes('127.0.0.1') ? '127.0.0.1:3000' : 'app.example.com' }), settings()), origin).toBe(false)
    }
  })

  it('accepts a listed origin, normalized', () => {
    const allowed = parseAllowedOrigins('https://admin.example.com/, http://LOCALHOST:5173', () => {})
    expect([...allowed]).toEqual(['https://admin.example.com', 'http://localhost:5173'])
    expect(isOriginAllowed(headers({ origin: 'https://admin.example.com', host: 'app.example.com' }), { allowedOrigins: allowed, trustProxy: false })).toBe(true)
    expect(isOriginAllowed(headers({ origin: 'http://localhost:5173', host: 'app.example.com' }), { allowedOrigins: allowed, trustProxy: false })).toBe(true)
    expect(isOriginAllowed(headers({ origin: 'https://localhost:5173', host: 'app.example.com' }), { allowedOrigins: allowed, trustProxy: false })).toBe(false)
  })

  it('ignores X-Forwarded-* unless told to trust the proxy', () => {
    const forwarded = { 'origin': 'https://evil.example', 'host': 'app.internal:3000', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' }
    expect(isOriginAllowed(headers(forwarded), settings())).toBe(false)
  })

  it('behind a trusted proxy, takes the own origin from X-Forwarded-Host and -Proto (first value), scheme included', () => {
    const proxied = (origin: string, extra: Record<string, string> = {}) => headers({ origin, 'host': 'app.internal:3000', 'x-forwarded-host': 'app.example.com, proxy.internal', 'x-forwarded-proto': 'https', ...extra })
    expect(isOriginAllowed(proxied('https://app.example.com'), settings([], true))).toBe(true)
    expect(isOriginAllowed(proxied('http://app.example.com'), settings([], true))).toBe(false)
    expect(isOriginAllowed(proxied('https://app.internal:3000'), settings([], true))).toBe(false)
    // Without X-Forwarded-Host the Host counts.
    expect(isOriginAllowed(headers({ origin: 'http://app.internal:3000', host: 'app.internal:3000' }), settings([], true))).toBe(true)
  })
})

describe('resolveSecuritySettings', () => {
  it('defaults to closed, own origin only, no proxy, the default limits', () => {
    expect(resolveSecuritySettings(undefined, () => {})).toEqual({ public: false, allowedOrigins: new Set(), trustProxy: false, limits: DEFAULT_LIMITS })
  })

  it('reads env-style strings (NUXT_LIVE_SYNC_*)', () => {
    const resolved = resolveSecuritySettings({ public: 'true', trustProxy: '1', allowedOrigins: 'https://a.example,https://b.example', limits: { maxFrameBytes: '1024', frameBurst: 50 } }, () => {})
    expect(resolved).toEqual({
      public: true,
      trustProxy: true,
      allowedOrigins: new Set(['https://a.example', 'https://b.example']),
      limits: { ...DEFAULT_LIMITS, maxFrameBytes: 1024, frameBurst: 50 },
    })
  })

  it('warns when the burst could not hold a resubscription of every key a socket may have', () => {
    const warnings: string[] = []
    const resolved = resolveSecuritySettings({ limits: { frameBurst: 100, maxKeysPerSocket: 500 } }, message => warnings.push(message))
    expect(resolved.limits).toMatchObject({ frameBurst: 100, maxKeysPerSocket: 500 })
    expect(warnings).toEqual([expect.stringMatching(/frameBurst \(100\) is below maxKeysPerSocket \(500\).*Raise frameBurst to at least 500\./)])
  })

  it('reports a wrong origin or limit once each, naming the fix, and keeps the rest', () => {
    const warnings: string[] = []
    const resolved = resolveSecuritySettings({ allowedOrigins: ['https://ok.example', 'ok.example', 'ftp://x.example'], limits: { maxBufferedBytes: '-5', framesPerSecond: 'fast' } }, message => warnings.push(message))
    expect([...resolved.allowedOrigins]).toEqual(['https://ok.example'])
    expect(resolved.limits).toEqual(DEFAULT_LIMITS)
    expect(warnings).toEqual([
      expect.stringMatching(/^\[live-sync\] liveSync\.allowedOrigins: "ok\.example" is not an origin such as "https:\/\/admin\.example\.com"/),
      expect.stringMatching(/"ftp:\/\/x\.example" is not an origin/),
      expect.stringMatching(/^\[live-sync\] liveSync\.limits\.maxBufferedBytes must be a positive integer, got "-5"; using 4194304\./),
      expect.stringMatching(/liveSync\.limits\.framesPerSecond must be a positive integer, got "fast"/),
    ])
  })
})
