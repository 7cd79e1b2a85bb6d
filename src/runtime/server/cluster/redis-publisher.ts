/**
 * The leader's side of Redis: each committed transaction's per-key frames
 * (serialized once, here) go to the shared history and out to the
 * instances subscribed to their keys, in one script call per transaction
 * (redis-layout.ts). Calls go out back to back on one connection and Redis
 * answers in order, so a transaction is acknowledged to Postgres once its
 * own call resolved, and never before the ones committed earlier.
 */
import { randomBytes } from 'node:crypto'
import type { Lsn } from '../../shared/lsn'
import type { ClusterTransaction } from '../engine/engine-cluster'
import { LiveSyncError } from '../engine/errors'
import { KeyBatch } from '../engine/key-batch'
import { runScript, type RedisConnection } from './redis-client'
import { BEGIN_SCRIPT, frameHeader, keyChannel, keysPattern, lsnDecimal, POSITION_SCRIPT, PUBLISH_SCRIPT, type PositionMessage, type RedisLayout } from './redis-layout'

export interface HistoryBounds {
  /** Rows kept across all keys. */
  maxRows: number
  /** How long a transaction is kept, in ms. */
  maxAgeMs: number
}

export class RedisPublisher {
  /** The history's epoch, learnt in `begin()`. */
  private epoch = ''
  /** LSN (decimal) of the newest transaction sent: the next one must find it published. */
  private prev = '0'

  constructor(
    private readonly redis: RedisConnection,
    private readonly layout: RedisLayout,
    private readonly bounds: HistoryBounds,
  ) {}

  /**
   * A leader's stream begins at `point`: loads the scripts and starts (or
   * continues) the history. Resolves before the stream starts.
   */
  async begin(point: Lsn, created: boolean): Promise<void> {
    await this.redis.script('LOAD', PUBLISH_SCRIPT.source)
    await this.redis.script('LOAD', POSITION_SCRIPT.source)
    const [epoch, last] = await runScript(this.redis, BEGIN_SCRIPT, [this.layout.meta, this.layout.log], [lsnDecimal(point), created ? '1' : '', randomBytes(6).toString('hex'), point, this.layout.positions, keysPattern(this.layout)]) as [string, string]
    this.epoch = epoch
    this.prev = last
  }

  /** Publishes a transaction; resolves once Redis has it (or had it: a new leader streams again what its predecessor published). */
  async publish(tx: ClusterTransaction): Promise<void> {
    const lsn = lsnDecimal(tx.cursor)
    const prev = this.prev
    // Transactions Redis has already keep the chain where it is.
    if (Number(lsn) > Number(prev)) this.prev = lsn
    const keys = [this.layout.meta, this.layout.log]
    const names: string[] = []
    const frames: string[] = []
    if (tx.keyed) {
      for (const [key, { changes }] of tx.keyed.byKey) {
        keys.push(keyChannel(this.layout, key))
        names.push(key)
        // part, changes, header, frame: one part per key for now (see redis-layout.ts).
        frames.push('0', String(changes.length), frameHeader(tx.cursor, 0, true, changes.length), new KeyBatch(key, tx.cursor, changes, 0).frame())
      }
    }
    const position: PositionMessage = { e: this.epoch, c: tx.cursor }
    if (tx.truncated) Object.assign(position, { r: 'truncate', t: tx.truncated })
    else if (tx.broken || tx.oversized === 'all') position.r = 'gap'
    // Too large to publish: its keys reload, and the history cannot replay it (the floor rises).
    else if (tx.oversized) Object.assign(position, { r: 'gap', k: tx.oversized })
    check(await this.redis.evalsha(PUBLISH_SCRIPT.sha, keys.length, ...keys,
      this.epoch, lsn, prev, Date.now(), this.bounds.maxRows, this.bounds.maxAgeMs,
      JSON.stringify(position), position.r ? '1' : '', JSON.stringify(names), this.layout.keys,
      this.layout.positions, ...frames,
    ), tx.cursor)
  }

  /** Publishes a position with no transaction before it (keepalives, unwatched tables). */
  async publishPosition(lsn: Lsn): Promise<void> {
    const position: PositionMessage = { e: this.epoch, c: lsn }
    check(await this.redis.evalsha(POSITION_SCRIPT.sha, 1, this.layout.meta, this.epoch, lsnDecimal(lsn), JSON.stringify(position), this.layout.positions), lsn)
  }
}

function check(result: unknown, cursor: Lsn): void {
  if (result === 1 || result === 0) return
  throw new LiveSyncError('REDIS', result === -1
    ? `the shared history in Redis was lost or replaced (at ${cursor}): streaming again from the slot's confirmed position into a new history.`
    : `a transaction before ${cursor} did not reach Redis: streaming again from the slot's confirmed position.`)
}
