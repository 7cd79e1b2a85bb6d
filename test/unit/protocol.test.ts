import { describe, expect, it } from 'vitest'
import {
  idKey,
  keyString,
  MAX_CLIENT_FRAME,
  MAX_CLIENT_FRAME_DEPTH,
  MAX_KEY_LENGTH,
  parseClientMessage,
  ProtocolError,
  rowId,
} from '../../src/runtime/shared/protocol'

/** The ProtocolError thrown for `text` (fails the test when nothing is thrown). */
function rejection(text: string): ProtocolError {
  try {
    parseClientMessage(text)
  }
  catch (error) {
    expect(error).toBeInstanceOf(ProtocolError)
    return error as ProtocolError
  }
  throw new Error(`parseClientMessage accepted ${text.slice(0, 80)}`)
}

function expectBadRequest(text: string, message: RegExp): void {
  const error = rejection(text)
  expect(error.code).toBe('bad-request')
  expect(error.message).toMatch(message)
}

const frame = (value: unknown) => JSON.stringify(value)

describe('parseClientMessage: valid frames', () => {
  it('parses sub with and without since', () => {
    expect(parseClientMessage(frame({ type: 'sub', key: 'org-1' }))).toEqual({ type: 'sub', key: 'org-1' })
    expect(parseClientMessage(frame({ type: 'sub', key: 42, since: '0/16B3F80' }))).toEqual({ type: 'sub', key: 42, since: '0/16B3F80' })
    expect(parseClientMessage(frame({ type: 'sub', key: true, since: null }))).toEqual({ type: 'sub', key: true })
  })

  it('accepts the padded LSN spelling as since', () => {
    expect(parseClientMessage(frame({ type: 'sub', key: 'a', since: '00000000/0152BF30' }))).toMatchObject({ since: '00000000/0152BF30' })
  })

  it('parses unsub', () => {
    expect(parseClientMessage(frame({ type: 'unsub', key: 'org-1' }))).toEqual({ type: 'unsub', key: 'org-1' })
  })

  it('parses replay', () => {
    expect(parseClientMessage(frame({ type: 'replay', key: 7, since: '1/0', ref: 3 }))).toEqual({ type: 'replay', key: 7, since: '1/0', ref: 3 })
  })

  it('parses ping with and without t', () => {
    expect(parseClientMessage(frame({ type: 'ping' }))).toEqual({ type: 'ping' })
    expect(parseClientMessage(frame({ type: 'ping', t: 123 }))).toEqual({ type: 'ping', t: 123 })
    expect(parseClientMessage(frame({ type: 'ping', t: 'x' }))).toEqual({ type: 'ping' })
  })

  it('ignores unknown extra fields', () => {
    expect(parseClientMessage(frame({ type: 'unsub', key: 'a', extra: { deep: 1 } }))).toEqual({ type: 'unsub', key: 'a' })
  })

  it('accepts a key of exactly the maximum length', () => {
    const key = 'k'.repeat(MAX_KEY_LENGTH)
    expect(parseClientMessage(frame({ type: 'sub', key }))).toEqual({ type: 'sub', key })
  })
})

describe('parseClientMessage: malformed frames', () => {
  it('rejects text that is not JSON', () => {
    expectBadRequest('{"type":"sub",', /not valid JSON/)
    expectBadRequest('', /not valid JSON/)
  })

  it('rejects JSON that is not an object', () => {
    for (const text of ['null', '[]', '"sub"', '42', 'true', '[{"type":"sub","key":"a"}]']) expectBadRequest(text, /must be a JSON object/)
  })

  it('rejects an unknown or missing type and names the valid ones', () => {
    expectBadRequest(frame({ type: 'subscribe', key: 'a' }), /unknown message type "subscribe".*sub, unsub, replay, snapshot or ping/)
    expectBadRequest(frame({ key: 'a' }), /unknown message type/)
  })

  it('rejects keys of the wrong type', () => {
    for (const key of [{ id: 1 }, [1], null, undefined]) {
      expectBadRequest(frame({ type: 'sub', key }), /"key" must be a string, a finite number or a boolean/)
    }
    expectBadRequest(frame({ type: 'unsub', key: { id: 1 } }), /"key" must be/)
  })

  it('rejects non-finite number keys', () => {
    // JSON has no NaN literal: a frame containing one is not JSON at all.
    expectBadRequest('{"type":"sub","key":NaN}', /not valid JSON/)
    // 1e400 parses to Infinity.
    expectBadRequest('{"type":"sub","key":1e400}', /"key" must be a string, a finite number or a boolean/)
    expectBadRequest('{"type":"sub","key":-1e400}', /"key" must be/)
  })

  it('rejects an empty key and a key that is too long', () => {
    expectBadRequest(frame({ type: 'sub', key: '' }), new RegExp(`"key" must be 1 to ${MAX_KEY_LENGTH} characters`))
    expectBadRequest(frame({ type: 'sub', key: 'k'.repeat(MAX_KEY_LENGTH + 1) }), /"key" must be 1 to/)
  })

  it('rejects a since that is not a cursor', () => {
    for (const since of ['yesterday', '0/123456789', 12, '', { lsn: '0/1' }]) {
      expectBadRequest(frame({ type: 'sub', key: 'a', since }), /"since" must be a cursor/)
    }
  })

  it('requires since and an integer ref on replay', () => {
    expectBadRequest(frame({ type: 'replay', key: 'a', ref: 1 }), /"since" is required/)
    expectBadRequest(frame({ type: 'replay', key: 'a', since: 'x', ref: 1 }), /"since" must be a cursor/)
    expectBadRequest(frame({ type: 'replay', key: 'a', since: '0/1' }), /"ref" must be an integer/)
    expectBadRequest(frame({ type: 'replay', key: 'a', since: '0/1', ref: 1.5 }), /"ref" must be an integer/)
    expectBadRequest(frame({ type: 'replay', key: 'a', since: '0/1', ref: '1' }), /"ref" must be an integer/)
  })

  it('rejects a frame larger than the limit before parsing it', () => {
    const padding = 'x'.repeat(MAX_CLIENT_FRAME)
    expectBadRequest(frame({ type: 'ping', padding }), new RegExp(`frame longer than ${MAX_CLIENT_FRAME} characters`))
    // Even when it would not be JSON.
    expectBadRequest(`{${padding}`, /frame longer than/)
  })

  it('accepts a frame right at the limit', () => {
    const base = frame({ type: 'ping', p: '' })
    const text = frame({ type: 'ping', p: 'x'.repeat(MAX_CLIENT_FRAME - base.length) })
    expect(text.length).toBe(MAX_CLIENT_FRAME)
    expect(parseClientMessage(text)).toEqual({ type: 'ping' })
  })

  it('rejects prototype keys anywhere in a frame, and pollutes nothing', () => {
    expectBadRequest('{"type":"sub","key":1,"__proto__":{"polluted":true}}', /"__proto__" key/)
    expectBadRequest('{"type":"ping","t":1,"x":{"constructor":{"prototype":{"polluted":true}}}}', /"constructor" key/)
    expectBadRequest('{"type":"ping","x":[{"prototype":1}]}', /"prototype" key/)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('rejects nesting deeper than the limit, and accepts it up to the limit', () => {
    const nested = (depth: number) => `{"type":"ping","x":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`
    expect(parseClientMessage(nested(MAX_CLIENT_FRAME_DEPTH))).toEqual({ type: 'ping' })
    expectBadRequest(nested(MAX_CLIENT_FRAME_DEPTH + 1), /nested deeper than/)
    // As deep as the frame length allows: still an error, not a stack overflow.
    expectBadRequest(`${'['.repeat(2000)}${']'.repeat(2000)}`, /must be a JSON object/)
    expectBadRequest(`{"type":"ping","x":${'['.repeat(2000)}${']'.repeat(2000)}}`, /nested deeper than/)
  })

  it('throws errors whose message is prefixed for the logs', () => {
    expect(rejection('nope').message).toMatch(/^\[live-sync\] /)
    expect(rejection('nope').name).toBe('ProtocolError')
  })
})

describe('keyString', () => {
  it('lets a number key and its string spelling meet', () => {
    expect(keyString(5)).toBe('5')
    expect(keyString('5')).toBe('5')
    expect(keyString(5n)).toBe('5')
  })

  it('spells booleans, dates and objects', () => {
    expect(keyString(true)).toBe('true')
    expect(keyString(new Date('2024-01-02T03:04:05.000Z'))).toBe('2024-01-02T03:04:05.000Z')
    expect(keyString({ a: 1 })).toBe('{"a":1}')
  })

  it('gives null for null and undefined', () => {
    expect(keyString(null)).toBeNull()
    expect(keyString(undefined)).toBeNull()
  })
})

describe('idKey and rowId', () => {
  it('reads a single id attribute', () => {
    expect(rowId({ id: 3, title: 'x' }, ['id'])).toBe(3)
    expect(rowId({ uuid: 'u', id: 3 }, ['uuid'])).toBe('u')
  })

  it('reads a composite id as an array in attribute order', () => {
    expect(rowId({ a: 1, b: 'x', c: 0 }, ['b', 'a'])).toEqual(['x', 1])
  })

  it('indexes a number id and its string spelling alike', () => {
    expect(idKey(3)).toBe(idKey('3'))
  })

  it('keeps composite ids apart that a plain join would mix up', () => {
    expect(idKey(['a,b', 'c'])).not.toBe(idKey(['a', 'b,c']))
    expect(idKey([1, 2])).toBe(idKey([1, 2]))
    expect(idKey([1, 2])).not.toBe(idKey([2, 1]))
  })

  it('maps a missing id to the empty string', () => {
    expect(idKey(undefined)).toBe('')
    expect(idKey(null)).toBe('')
  })
})
