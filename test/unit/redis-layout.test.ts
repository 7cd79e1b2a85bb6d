import { describe, expect, it } from 'vitest'
import { decodeFrameMessage, frameHeader, keyChannel, keysPattern, lsnDecimal, parseHeader, redisLayout } from '../../src/runtime/server/cluster/redis-layout'
import { numberToLsn } from '../../src/runtime/shared/lsn'

describe('cluster mode\'s Redis layout', () => {
  it('keeps one app\'s keys under one hash tag, apart by database and slot', () => {
    const layout = redisLayout('myapp', 'live_sync')
    expect(layout).toEqual({ prefix: 'live-sync:{myapp/live_sync}:', meta: 'live-sync:{myapp/live_sync}:meta', log: 'live-sync:{myapp/live_sync}:log', positions: 'live-sync:{myapp/live_sync}:pos', keys: 'live-sync:{myapp/live_sync}:k:' })
    expect(keyChannel(layout, 'org:5')).toBe('live-sync:{myapp/live_sync}:k:org:5')
    expect(redisLayout('other', 'live_sync').meta).not.toBe(layout.meta)
    expect(keysPattern(layout)).toBe('live-sync:{myapp/live_sync}:k:*')
    expect(keysPattern(redisLayout('we*ird[db]', 'live_sync'))).toBe('live-sync:{we\\*ird\\[db\\]/live_sync}:k:*')
  })

  it('stores LSNs as exact decimals', () => {
    expect(lsnDecimal('0/16B3F80')).toBe(String(0x16B3F80))
    expect(lsnDecimal('1F/FFFFFFFF')).toBe(String(0x1F_FFFF_FFFF))
    expect(numberToLsn(Number(lsnDecimal('A/B')))).toBe('A/B')
  })

  it('splits a published message into its header and the frame, as is (bytes not copied)', () => {
    const frame = '{"type":"tx","key":"5","cursor":"0/16B3F80","changes":[{"op":"insert","model":"Task","id":1,"row":{"id":1,"title":"é \\n"}}]}'
    const message = Buffer.from(frameHeader('0/16B3F80', 0, true, 1) + frame)
    const decoded = decodeFrameMessage(message)
    expect(decoded).toMatchObject({ cursor: '0/16B3F80', part: 0, last: true, changes: 1 })
    expect(decoded.frame.toString()).toBe(frame)
    expect((decoded.frame as Buffer).buffer).toBe(message.buffer)
    expect(parseHeader('0/1 2 0 30')).toEqual({ cursor: '0/1', part: 2, last: false, changes: 30 })
    expect(() => decodeFrameMessage(Buffer.from('no header'))).toThrow(/without a header/)
  })
})
