/**
 * Recent batches of every key, so that a subscriber arriving with a cursor
 * (the page's data was loaded at that point, or the socket reconnected) gets
 * what it missed. Bounded by rows and age; `floor` is the oldest cursor from
 * which replay is still complete.
 */
import { compareLsn, maxLsn, type Lsn } from '../../shared/lsn'
import type { KeyBatch } from './key-batch'

/**
 * Where a late subscriber's missed batches come from: this process's
 * `ReplayBuffer`, or in cluster mode the history shared in Redis
 * (cluster/redis-history.ts), which is read asynchronously.
 */
export interface ReplayHistory {
  /** The batches of `key` after `since`, oldest first, or `null` when `since` is older than the history reaches. */
  since: (key: string, since: Lsn) => KeyBatch[] | null | Promise<KeyBatch[] | null>
}

export interface ReplayBufferOptions {
  /** Rows kept across all keys. */
  maxRows?: number
  /** How long a batch is kept, in ms. */
  maxAgeMs?: number
}

/** An array used as a queue: O(1) shift through a moving head. */
class Queue<T> {
  items: T[] = []
  head = 0
  get size(): number {
    return this.items.length - this.head
  }

  peek(): T | undefined {
    return this.items[this.head]
  }

  push(item: T): void {
    this.items.push(item)
  }

  peekLast(): T | undefined {
    return this.size > 0 ? this.items.at(-1) : undefined
  }

  pop(): T | undefined {
    return this.size > 0 ? this.items.pop() : undefined
  }

  shift(): T | undefined {
    const item = this.items[this.head]
    this.items[this.head++] = undefined as T
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
}

export class ReplayBuffer implements ReplayHistory {
  private readonly all = new Queue<KeyBatch>()
  private readonly byKey = new Map<string, Queue<KeyBatch>>()
  private rows = 0
  readonly maxRows: number
  private readonly maxAgeMs: number
  /** Replay from a cursor older than this would miss changes. */
  floor: Lsn | null = null

  constructor(options: ReplayBufferOptions = {}) {
    this.maxRows = options.maxRows ?? 100_000
    this.maxAgeMs = options.maxAgeMs ?? 120_000
  }

  /** Start over at `floor` (a new replication session: nothing before it can be replayed). */
  reset(floor: Lsn | null): void {
    this.all.items = []
    this.all.head = 0
    this.byKey.clear()
    this.rows = 0
    this.floor = floor
  }

  /**
   * Nothing before `cursor` can be replayed any more: a TRUNCATE (which the
   * history cannot express as row changes) or a transaction that could not
   * be processed happened there. Older cursors get `too-old`, so resync.
   */
  raiseFloor(cursor: Lsn): void {
    this.floor = maxLsn(this.floor, cursor)
  }

  add(batch: KeyBatch): void {
    this.all.push(batch)
    let queue = this.byKey.get(batch.key)
    if (!queue) this.byKey.set(batch.key, (queue = new Queue()))
    queue.push(batch)
    this.rows += batch.size
    this.evict(batch.at)
  }

  /**
   * Forgets the newest batches with one of `cursors` (the parts of a
   * transaction too large to keep) and raises the floor to them: a
   * subscriber that needs that transaction is told to resync.
   */
  discard(...cursors: Lsn[]): void {
    for (let batch = this.all.peekLast(); batch && cursors.includes(batch.cursor); batch = this.all.peekLast()) {
      this.all.pop()
      this.rows -= batch.size
      const queue = this.byKey.get(batch.key)!
      queue.pop()
      if (queue.size === 0) this.byKey.delete(batch.key)
    }
    for (const cursor of cursors) this.raiseFloor(cursor)
  }

  /** Drops the oldest batches beyond the row and age limits. */
  evict(now: number): void {
    const oldest = now - this.maxAgeMs
    while (this.all.size > 0 && (this.rows > this.maxRows || this.all.peek()!.at < oldest)) {
      const batch = this.all.shift()!
      this.rows -= batch.size
      const queue = this.byKey.get(batch.key)!
      queue.shift()
      if (queue.size === 0) this.byKey.delete(batch.key)
      this.floor = maxLsn(this.floor, batch.cursor)
    }
  }

  /**
   * The batches of `key` after `since`, oldest first, or `null` when `since`
   * is older than the floor (the caller must tell the client to resync).
   */
  since(key: string, since: Lsn): KeyBatch[] | null {
    if (this.floor && compareLsn(since, this.floor) < 0) return null
    const queue = this.byKey.get(key)
    if (!queue) return []
    const out: KeyBatch[] = []
    // Newest first until we pass `since`: replays are usually short suffixes.
    for (let i = queue.items.length - 1; i >= queue.head; i--) {
      const batch = queue.items[i]!
      if (!batch.after(since)) break
      out.push(batch)
    }
    return out.reverse()
  }

  get size(): { batches: number, rows: number, keys: number } {
    return { batches: this.all.size, rows: this.rows, keys: this.byKey.size }
  }
}
