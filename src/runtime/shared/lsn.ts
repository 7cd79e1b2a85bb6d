/**
 * PostgreSQL log sequence numbers ("0/16B3F80"). They arrive in two spellings
 * (`0/152BF60` and `00000000/0152BF30`), so everything that stores or compares
 * one goes through `normalizeLsn` / `compareLsn`.
 */

export type Lsn = string

const LSN_RE = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i

/** True when `value` is an LSN in either spelling. */
export function isLsn(value: unknown): value is Lsn {
  return typeof value === 'string' && LSN_RE.test(value)
}

/** The canonical spelling: upper-case hex, no leading zeros (`0/152BF60`). */
export function normalizeLsn(lsn: Lsn): Lsn {
  const slash = lsn.indexOf('/')
  const hi = Number.parseInt(lsn.slice(0, slash), 16)
  const lo = Number.parseInt(lsn.slice(slash + 1), 16)
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`
}

/** The LSN as one number; exact below 2^53 bytes of WAL (8 PiB). */
export function lsnToNumber(lsn: Lsn): number {
  const slash = lsn.indexOf('/')
  return Number.parseInt(lsn.slice(0, slash), 16) * 0x1_0000_0000 + Number.parseInt(lsn.slice(slash + 1), 16)
}

/** The spelling of a number from `lsnToNumber`. */
export function numberToLsn(value: number): Lsn {
  const hi = Math.floor(value / 0x1_0000_0000)
  return `${hi.toString(16).toUpperCase()}/${(value - hi * 0x1_0000_0000).toString(16).toUpperCase()}`
}

/** The LSN one byte before `lsn` (`0/0` stays). */
export function previousLsn(lsn: Lsn): Lsn {
  return numberToLsn(Math.max(0, lsnToNumber(lsn) - 1))
}

/** Negative, zero or positive like a sort comparator. */
export function compareLsn(a: Lsn, b: Lsn): number {
  return lsnToNumber(a) - lsnToNumber(b)
}

/** The later of two LSNs; `null` counts as "before everything". */
export function maxLsn(a: Lsn | null | undefined, b: Lsn | null | undefined): Lsn | null {
  if (!a) return b ?? null
  if (!b) return a
  return compareLsn(a, b) >= 0 ? a : b
}

/** The LSN one byte after `lsn`. */
export function nextLsn(lsn: Lsn): Lsn {
  return numberToLsn(lsnToNumber(lsn) + 1)
}
