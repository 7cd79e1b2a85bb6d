import { describe, expect, it } from 'vitest'
import { toJSONValue, utcTimestampToISO } from '../../src/runtime/server/engine/row-shaper'

describe('values as JSON.stringify gives them', () => {
  it('converts like JSON.parse(JSON.stringify(value))', () => {
    const values: unknown[] = [
      'text', 0, -1.5, Number.NaN, Number.POSITIVE_INFINITY, true, null,
      new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6)), new Date(Number.NaN),
      Buffer.from([1, 2, 255]), [1, null, 'x', [new Date(0)]], { a: 1, b: undefined, c: { d: [Buffer.from('hi')] } },
    ]
    for (const value of values) expect(toJSONValue(value)).toEqual(JSON.parse(JSON.stringify([value]))[0])
  })

  it('turns UTC timestamptz text into the ISO string of the same instant', () => {
    const cases = ['2026-11-25 14:11:30+00', '2026-11-25 14:11:30.1+00', '2026-11-25 14:11:30.123456+00', '1999-12-31 23:59:59.999999+00', '0100-01-01 00:00:00+00']
    for (const text of cases) {
      const viaDate = new Date(`${text.replace(' ', 'T').replace('+00', '')}Z`).toISOString()
      expect(utcTimestampToISO(text)).toBe(viaDate)
    }
  })

  it('leaves anything but plain UTC timestamps to the general path', () => {
    for (const text of ['infinity', '-infinity', '2026-11-25 14:11:30+05', '2026-11-25 14:11:30+00 BC', '12026-01-01 00:00:00+00']) {
      expect(utcTimestampToISO(text)).toBeUndefined()
    }
  })
})
