/**
 * The replay history of cluster mode, shared in Redis: each key's recent
 * frames in its own stream, so a tab that reconnects to any instance gets
 * what it missed in O(its key's entries), and a floor below which the
 * history is incomplete (older cursors get `resync`). The leader writes it
 * (redis-publisher.ts), bounded by rows and age like a single instance's
 * `ReplayBuffer`; any instance reads it.
 */
import { lsnToNumber, type Lsn } from '../../shared/lsn'
import { KeyBatch } from '../engine/key-batch'
import type { ReplayHistory } from '../engine/replay-buffer'
import { runScript, type RedisConnection } from './redis-client'
import { HISTORY_SCRIPT, keyChannel, parseHeader, type RedisLayout } from './redis-layout'

/** One stream entry as XRANGE returns it: ID, then fields `h` (header) and `f` (frame). */
type StreamEntry = [string, [string, string, string, string]]

export class RedisHistory implements ReplayHistory {
  constructor(
    private readonly redis: RedisConnection,
    private readonly layout: RedisLayout,
  ) {}

  async since(key: string, since: Lsn): Promise<KeyBatch[] | null> {
    const after = lsnToNumber(since)
    const reply = await runScript(this.redis, HISTORY_SCRIPT, [this.layout.meta, keyChannel(this.layout, key)], [String(after), `${after + 1}-0`]) as [string, string, number, StreamEntry[]?] | []
    // No history (nothing published since Redis started), or `since` is below its floor.
    if (reply.length < 3 || reply[2] !== 1) return null
    const now = Date.now()
    return (reply[3] ?? []).map(([, fields]) => {
      const header = parseHeader(fields[1])
      return KeyBatch.fromFrame(key, header.cursor, header.changes, fields[3], now)
    })
  }
}
