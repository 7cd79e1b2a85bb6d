/**
 * What cluster mode keeps in Redis, and the shape of its messages. Every
 * key of one app shares a hash tag (`{database/slot}`), so on a Redis
 * Cluster they all live on one node and the scripts may touch them together.
 *
 * | key / channel | type | content |
 * |---|---|---|
 * | `P:meta` | hash | `epoch` (names this history; a new one after Redis lost it), `last` (LSN of the last published transaction), `pos` (every instance has been sent everything up to here), `floor` (a replay from before it may miss changes), `rows` (rows in the history); LSNs as decimal numbers |
 * | `P:log` | stream | one entry per published transaction, ID `<lsn>-0`: `at` (ms), `n` (rows), `k` (JSON array of its keys): the order in which the history is trimmed |
 * | `P:k:<key>` | stream | the key's frames, ID `<lsn>-<part>`: `h` (header), `f` (the `tx` frame as the sockets get it) |
 * | channel `P:k:<key>` | pub/sub | the same frames as they are published: header, then the frame |
 * | channel `P:pos` | pub/sub | `{"e":epoch,"c":cursor}` after each published transaction or position, with `"r"` (and `"t"`) when subscribers must resync |
 *
 * A header is `<cursor> <part> <last> <changes>\n`: a transaction may reach
 * a key as several frames (parts) some day; today each is one part, the last.
 */
import { createHash } from 'node:crypto'
import { lsnToNumber, type Lsn } from '../../shared/lsn'

export interface RedisLayout {
  /** `live-sync:{database/slot}:` */
  prefix: string
  meta: string
  log: string
  /** Channel of positions and resyncs. */
  positions: string
  /** Prefix of a key's stream and channel. */
  keys: string
}

/** The layout for one database's slot (two apps on one Redis keep apart by database and slot). */
export function redisLayout(database: string, slotName: string): RedisLayout {
  const prefix = `live-sync:{${database}/${slotName}}:`
  return { prefix, meta: `${prefix}meta`, log: `${prefix}log`, positions: `${prefix}pos`, keys: `${prefix}k:` }
}

/** A glob matching every key's stream (its special characters escaped). */
export function keysPattern(layout: RedisLayout): string {
  return `${layout.keys.replace(/[*?[\]\\]/g, '\\$&')}*`
}

/** The stream (and channel) of one subscription key. */
export function keyChannel(layout: RedisLayout, key: string): string {
  return layout.keys + key
}

/** An LSN as Redis stores it: a decimal number (exact below 2^53). */
export function lsnDecimal(lsn: Lsn): string {
  return String(lsnToNumber(lsn))
}

/** The header published before a frame. */
export function frameHeader(cursor: Lsn, part: number, last: boolean, changes: number): string {
  return `${cursor} ${part} ${last ? 1 : 0} ${changes}\n`
}

export interface FrameMessage {
  cursor: Lsn
  part: number
  last: boolean
  /** Number of changes in the frame. */
  changes: number
  /** The `tx` frame, as the sockets get it. */
  frame: Buffer | string
}

/** Splits a published message (or a history entry's header and frame) into header fields and frame. */
export function decodeFrameMessage(message: Buffer): FrameMessage {
  const newline = message.indexOf(10)
  if (newline < 0) throw new Error('[live-sync] a Redis frame message without a header')
  return { ...parseHeader(message.toString('latin1', 0, newline)), frame: message.subarray(newline + 1) }
}

/** `<cursor> <part> <last> <changes>` (without the newline). */
export function parseHeader(header: string): Omit<FrameMessage, 'frame'> {
  const [cursor, part, last, changes] = header.trimEnd().split(' ')
  return { cursor: cursor!, part: Number(part), last: last === '1', changes: Number(changes) }
}

/** What the positions channel carries. */
export interface PositionMessage {
  /** The history's epoch. */
  e: string
  /** Everything up to here has been published. */
  c: Lsn
  /** Subscribers must resync: a TRUNCATE, or changes that cannot be replayed. */
  r?: 'truncate' | 'gap'
  /** Tables, with `r: 'truncate'`. */
  t?: string[]
  /** With `r: 'gap'`: only these keys' subscribers resync (a transaction too large to publish). */
  k?: string[]
}

/** A Lua script run by its SHA1, so each call sends only its arguments. */
export class LuaScript {
  readonly sha: string
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex')
  }
}

/**
 * Publishes one committed transaction, once: idempotent on its LSN, and
 * chained (`prev` must be the last published LSN), so that a transaction
 * after one that failed is never published without it.
 *
 * KEYS: meta, log, then the stream of each frame.
 * ARGV: epoch, lsn, prev, at, maxRows, maxAgeMs, position message, raise
 * floor ('1' or ''), keys JSON, key prefix, positions channel, then per
 * frame: part, changes, header, frame.
 * Returns 1 (published), 0 (already there), -1 (another epoch: the history
 * was lost or replaced), -2 (`prev` is not the last published LSN).
 */
export const PUBLISH_SCRIPT = new LuaScript(`
local meta, log = KEYS[1], KEYS[2]
local lsn = ARGV[2]
local state = redis.call('HMGET', meta, 'epoch', 'last', 'floor', 'rows')
if state[1] ~= ARGV[1] then return -1 end
local last = tonumber(state[2])
if tonumber(lsn) <= last then return 0 end
if last ~= tonumber(ARGV[3]) then return -2 end
local rows = 0
local i = 12
for k = 3, #KEYS do
  local id = lsn .. '-' .. ARGV[i]
  -- A stream left by an older history with later IDs (another database server) goes.
  if redis.pcall('XADD', KEYS[k], id, 'h', ARGV[i + 2], 'f', ARGV[i + 3])['err'] then
    redis.call('DEL', KEYS[k])
    redis.call('XADD', KEYS[k], id, 'h', ARGV[i + 2], 'f', ARGV[i + 3])
  end
  redis.call('PUBLISH', KEYS[k], ARGV[i + 2] .. ARGV[i + 3])
  rows = rows + tonumber(ARGV[i + 1])
  i = i + 4
end
redis.call('XADD', log, lsn .. '-0', 'at', ARGV[4], 'n', rows, 'k', ARGV[9])
local floor = tonumber(state[3])
if ARGV[8] == '1' then floor = tonumber(lsn) end
rows = rows + tonumber(state[4] or '0')
local oldest = tonumber(ARGV[4]) - tonumber(ARGV[6])
local maxRows = tonumber(ARGV[5])
-- At most 1000 evictions per call, so that Redis never blocks long; the next calls go on.
for _ = 1, 1000 do
  local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
  if not first then break end
  local fields = first[2]
  if rows <= maxRows and tonumber(fields[2]) >= oldest then break end
  local id = first[1]
  local evicted = tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
  local after = string.format('%d', evicted + 1) .. '-0'
  for _, key in ipairs(cjson.decode(fields[6])) do
    local stream = ARGV[10] .. key
    redis.call('XTRIM', stream, 'MINID', after)
    if redis.call('XLEN', stream) == 0 then redis.call('DEL', stream) end
  end
  redis.call('XDEL', log, id)
  rows = rows - tonumber(fields[4])
  if evicted > floor then floor = evicted end
end
redis.call('HSET', meta, 'last', lsn, 'floor', string.format('%d', floor), 'rows', rows)
if tonumber(lsn) > tonumber(redis.call('HGET', meta, 'pos')) then redis.call('HSET', meta, 'pos', lsn) end
redis.call('PUBLISH', ARGV[11], ARGV[7])
return 1
`)

/**
 * Moves the position on without a transaction (a keepalive, or transactions
 * of tables nobody watches), so the slot may be acknowledged up to it.
 * KEYS: meta. ARGV: epoch, lsn, position message, positions channel.
 */
export const POSITION_SCRIPT = new LuaScript(`
local state = redis.call('HMGET', KEYS[1], 'epoch', 'pos')
if state[1] ~= ARGV[1] then return -1 end
if tonumber(ARGV[2]) > tonumber(state[2]) then
  redis.call('HSET', KEYS[1], 'pos', ARGV[2])
  redis.call('PUBLISH', ARGV[4], ARGV[3])
end
return 1
`)

/**
 * A leader's stream begins at `point`: starts the history there if Redis
 * has none, or if a new slot begins before what Redis has (another database
 * server); raises its floor when the slot is new or Redis never heard of
 * the point (it lost writes), since what came before cannot be replayed.
 * KEYS: meta, log. ARGV: point (decimal), slot created ('1' or ''), new
 * epoch, point (LSN), positions channel, glob of the keys' streams.
 * Returns { epoch, last published LSN }.
 */
export const BEGIN_SCRIPT = new LuaScript(`
local state = redis.call('HMGET', KEYS[1], 'epoch', 'pos', 'floor', 'last')
local moved = state[1] and ARGV[2] == '1' and tonumber(ARGV[1]) < tonumber(state[4])
if not state[1] or moved then
  -- What an older history left counts no more.
  redis.call('DEL', KEYS[2])
  if moved then
    -- Its LSNs are another server's: its streams could pass for this one's.
    local cursor = '0'
    repeat
      local reply = redis.call('SCAN', cursor, 'MATCH', ARGV[6], 'COUNT', 1000)
      cursor = reply[1]
      for _, key in ipairs(reply[2]) do redis.call('DEL', key) end
    until cursor == '0'
  end
  redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'pos', ARGV[1], 'floor', ARGV[1], 'last', '0', 'rows', '0')
  redis.call('PUBLISH', ARGV[5], cjson.encode({ e = ARGV[3], c = ARGV[4] }))
  return { ARGV[3], '0' }
end
local point = tonumber(ARGV[1])
if ARGV[2] == '1' or point > tonumber(state[2]) then
  if point > tonumber(state[3]) then redis.call('HSET', KEYS[1], 'floor', ARGV[1]) end
  if point > tonumber(state[2]) then redis.call('HSET', KEYS[1], 'pos', ARGV[1]) end
  redis.call('PUBLISH', ARGV[5], cjson.encode({ e = state[1], c = ARGV[4], r = 'gap' }))
end
return { state[1], state[4] }
`)

/**
 * A key's history after a cursor, up to the last published transaction.
 * KEYS: meta, the key's stream. ARGV: since (decimal), the first ID to
 * read. Returns {} without a history, else { epoch, pos (decimal), 0 } when
 * `since` is older than the floor, else { epoch, pos, 1, entries }.
 */
export const HISTORY_SCRIPT = new LuaScript(`
local state = redis.call('HMGET', KEYS[1], 'epoch', 'floor', 'pos', 'last')
if not state[1] then return {} end
if tonumber(ARGV[1]) < tonumber(state[2]) then return { state[1], state[3], 0 } end
return { state[1], state[3], 1, redis.call('XRANGE', KEYS[2], ARGV[2], state[4] .. '-18446744073709551615') }
`)
