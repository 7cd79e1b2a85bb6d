import { compareLsn, type Lsn } from '../../shared/lsn'
import type { Change, ResyncReason } from '../../shared/protocol'

/**
 * One committed transaction's changes for one key. Each change is
 * serialized the moment its row is shaped, so a large transaction holds one
 * flat string per row until commit instead of a graph of short-lived
 * objects (garbage collection was the largest cost of a 100 000-row
 * transaction). The wire frame is then a concatenation, built on first use
 * and shared by every socket subscribed to the key: a batch is serialized
 * once per key, not once per subscriber.
 */
export class KeyBatch {
  readonly type = 'tx'
  /** Number of changes. */
  readonly size: number
  /**
   * A part of a transaction streamed in chunks (`part` counts from 0, the
   * last one has `last: true` and the commit's cursor); undefined for a
   * transaction sent whole.
   */
  part?: { index: number, last: boolean }
  /**
   * The changes until the frame is built, then the frame: as a string, or
   * as UTF-8 bytes once a socket asked for those. One representation at a
   * time, since the replay history keeps batches for minutes.
   */
  private content: string[] | string | Buffer
  private decoded: Change[] | undefined

  constructor(
    readonly key: string,
    readonly cursor: Lsn,
    /** The changes, each serialized with `encodeChange`. */
    encodedChanges: string[],
    /** When it was dispatched (ms since epoch). */
    readonly at: number,
    part?: { index: number, last: boolean },
  ) {
    this.content = encodedChanges
    this.size = encodedChanges.length
    if (part) this.part = part
  }

  /**
   * A batch whose frame was made elsewhere (in cluster mode by the leader,
   * read from Redis): kept as it came, bytes or text.
   */
  static fromFrame(key: string, cursor: Lsn, size: number, frame: string | Buffer, at: number): KeyBatch {
    const batch = new KeyBatch(key, cursor, [], at)
    batch.content = frame
    ;(batch as { size: number }).size = size
    return batch
  }

  /** `{"type":"tx","key":…,"cursor":…,"changes":[…]}`, with `"part":n,"last":…` for a part. */
  frame(): string {
    const content = this.content
    if (typeof content === 'string') return content
    if (Buffer.isBuffer(content)) return content.toString('utf8')
    const part = this.part ? `"part":${this.part.index},"last":${this.part.last},` : ''
    return (this.content = `{"type":"tx","key":${JSON.stringify(this.key)},"cursor":"${this.cursor}",${part}"changes":[${content.join(',')}]}`)
  }

  /** The frame as UTF-8, encoded once and written to every socket as is. */
  frameBytes(): Buffer {
    if (!Buffer.isBuffer(this.content)) this.content = Buffer.from(this.frame(), 'utf8')
    return this.content
  }

  /** The frame of a replay answering one `replay` request. */
  replayFrame(ref: number): string {
    return `${this.frame().slice(0, -1)},"ref":${ref}}`
  }

  /** The changes as objects (for in-process subscribers; parsed on first use). */
  get changes(): Change[] {
    return (this.decoded ??= (JSON.parse(this.frame()) as { changes: Change[] }).changes)
  }

  /** Whether this batch comes after `since`. */
  after(since: Lsn): boolean {
    return compareLsn(this.cursor, since) > 0
  }
}

/** Serializes one change the way `KeyBatch` holds it. */
export function encodeChange(change: Change): string {
  return JSON.stringify(change)
}

/** Tells a key's subscribers that what they hold may be out of date. */
export class ResyncNotice {
  readonly type = 'resync'
  private encoded: string | undefined
  private bytes: Buffer | undefined

  constructor(
    readonly key: string,
    readonly cursor: Lsn | null,
    readonly reason: ResyncReason,
    readonly tables?: string[],
  ) {}

  frame(): string {
    return (this.encoded ??= JSON.stringify({ type: 'resync', key: this.key, cursor: this.cursor, reason: this.reason, tables: this.tables }))
  }

  frameBytes(): Buffer {
    return (this.bytes ??= Buffer.from(this.frame(), 'utf8'))
  }
}

export type Delivery = KeyBatch | ResyncNotice

/**
 * A subscriber that took a part of a streamed transaction but has more
 * unsent than it should: the replication stream waits until it drains
 * (Postgres holds the rest of the transaction meanwhile), or gives up on it.
 */
export interface Congestion {
  /** Whether it can take more (or is gone). */
  drained: () => boolean
  /** Bytes still waiting to go out to it: while they shrink, it is making progress. */
  backlog: () => number
  /** It did not drain in time: close it as a slow consumer. */
  stall: () => void
}

/**
 * Receives what happens to one key. Must not throw; must be quick. May
 * return a `Congestion` after a part of a streamed transaction (anything
 * else it returns is ignored).
 */
export type Subscriber = (delivery: Delivery) => unknown

/** Whether a subscriber's answer is a `Congestion`. */
export function isCongestion(value: unknown): value is Congestion {
  return typeof value === 'object' && value !== null && typeof (value as Congestion).drained === 'function' && typeof (value as Congestion).stall === 'function'
}
