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
  private encodedChanges: string[] | null
  private encoded: string | undefined
  private bytes: Buffer | undefined
  private decoded: Change[] | undefined

  constructor(
    readonly key: string,
    readonly cursor: Lsn,
    /** The changes, each already `JSON.stringify`-ed. */
    encodedChanges: string[],
    /** When it was dispatched (ms since epoch). */
    readonly at: number,
  ) {
    this.encodedChanges = encodedChanges
    this.size = encodedChanges.length
  }

  /** `{"type":"tx","key":…,"cursor":…,"changes":[…]}` */
  frame(): string {
    if (this.encoded === undefined) {
      this.encoded = `{"type":"tx","key":${JSON.stringify(this.key)},"cursor":"${this.cursor}","changes":[${this.encodedChanges!.join(',')}]}`
      this.encodedChanges = null // the frame holds them now
    }
    return this.encoded
  }

  /** The frame as UTF-8, encoded once and written to every socket as is. */
  frameBytes(): Buffer {
    return (this.bytes ??= Buffer.from(this.frame(), 'utf8'))
  }

  /** The frame of a replay answering one `replay` request. */
  replayFrame(ref: number): string {
    const frame = this.frame()
    return `${frame.slice(0, -1)},"ref":${ref}}`
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

/** Serializes changes the way `KeyBatch` holds them. */
export function encodeChanges(changes: readonly Change[]): string[] {
  return changes.map(change => JSON.stringify(change))
}

/** Tells a key's subscribers that what they hold may be out of date. */
export class ResyncNotice {
  readonly type = 'resync'
  private encoded: string | undefined

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
    return Buffer.from(this.frame(), 'utf8')
  }
}

export type Delivery = KeyBatch | ResyncNotice

/** Receives what happens to one key. Must not throw; must be quick. */
export type Subscriber = (delivery: Delivery) => void
