import { compareLsn, type Lsn } from '../../shared/lsn'
import type { Change, ResyncReason } from '../../shared/protocol'

/**
 * One committed transaction's changes for one key. Its wire frame is built
 * on first use and shared by every socket subscribed to the key, so a batch
 * is serialized once per key, not once per subscriber.
 */
export class KeyBatch {
  readonly type = 'tx'
  private encoded: string | undefined
  private bytes: Buffer | undefined

  constructor(
    readonly key: string,
    readonly cursor: Lsn,
    readonly changes: Change[],
    /** When it was dispatched (ms since epoch). */
    readonly at: number,
  ) {}

  frame(): string {
    return (this.encoded ??= JSON.stringify({ type: 'tx', key: this.key, cursor: this.cursor, changes: this.changes }))
  }

  /** The frame as UTF-8, encoded once and written to every socket as is. */
  frameBytes(): Buffer {
    return (this.bytes ??= Buffer.from(this.frame(), 'utf8'))
  }

  /** The frame of a replay answering one `replay` request. */
  replayFrame(ref: number): string {
    return JSON.stringify({ type: 'tx', key: this.key, cursor: this.cursor, changes: this.changes, ref })
  }

  /** Whether this batch comes after `since`. */
  after(since: Lsn): boolean {
    return compareLsn(this.cursor, since) > 0
  }
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
