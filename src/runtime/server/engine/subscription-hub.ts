/**
 * Who listens to which key. Lookup is one Map access per key of a
 * transaction, so a change costs the same whether ten or ten thousand other
 * keys have subscribers.
 */
import type { Lsn } from '../../shared/lsn'
import type { ResyncReason } from '../../shared/protocol'
import { isCongestion, KeyBatch, ResyncNotice, type Congestion, type Subscriber } from './key-batch'
import { ReplayBuffer, type ReplayBufferOptions } from './replay-buffer'
import type { LiveSyncLogger } from './errors'

export class SubscriptionHub {
  private readonly subscribers = new Map<string, Set<Subscriber>>()
  readonly buffer: ReplayBuffer
  /** Subscriptions across all keys. */
  subscriberTotal = 0

  constructor(
    private readonly logger: LiveSyncLogger,
    replay?: ReplayBufferOptions,
  ) {
    this.buffer = new ReplayBuffer(replay)
  }

  /** Records a key's batch (changes already serialized) for replay and hands it to the key's subscribers. */
  publish(key: string, cursor: Lsn, encodedChanges: string[], at: number): KeyBatch {
    const batch = new KeyBatch(key, cursor, encodedChanges, at)
    this.buffer.add(batch)
    const subscribers = this.subscribers.get(key)
    if (subscribers) this.deliver(subscribers, batch)
    return batch
  }

  /**
   * Hands a part of a streamed transaction to the key's subscribers
   * (recorded for replay when `record`); those that report congestion are
   * added to `congested`.
   */
  publishPart(batch: KeyBatch, record: boolean, congested: Congestion[]): void {
    if (record) this.buffer.add(batch)
    const subscribers = this.subscribers.get(batch.key)
    if (subscribers) this.deliver(subscribers, batch, congested)
  }

  /**
   * Hands a batch made elsewhere to its key's subscribers without recording
   * it: in cluster mode batches come from Redis, which keeps the history.
   */
  deliverBatch(batch: KeyBatch): void {
    const subscribers = this.subscribers.get(batch.key)
    if (subscribers) this.deliver(subscribers, batch)
  }

  /**
   * Tells every subscribed key (or only those of `keys`) that its state may
   * be stale; returns how many subscribers were told.
   */
  resyncAll(reason: ResyncReason, cursor: Lsn | null, tables?: string[], keys?: readonly string[]): number {
    let told = 0
    const each = (key: string, subscribers: Set<Subscriber>) => {
      told += subscribers.size
      this.deliver(subscribers, new ResyncNotice(key, cursor, reason, tables))
    }
    if (keys) {
      for (const key of keys) {
        const subscribers = this.subscribers.get(key)
        if (subscribers) each(key, subscribers)
      }
    }
    else {
      for (const [key, subscribers] of this.subscribers) each(key, subscribers)
    }
    return told
  }

  /** Adds a subscriber to `key`; returns the function that removes it. */
  subscribe(key: string, subscriber: Subscriber): () => void {
    let subscribers = this.subscribers.get(key)
    if (!subscribers) this.subscribers.set(key, (subscribers = new Set()))
    if (!subscribers.has(subscriber)) this.subscriberTotal++
    subscribers.add(subscriber)
    return () => {
      const current = this.subscribers.get(key)
      if (!current?.delete(subscriber)) return
      this.subscriberTotal--
      if (current.size === 0) this.subscribers.delete(key)
    }
  }

  /** Each key with subscribers and how many (for the DevTools tab). */
  keys(): Array<{ key: string, subscribers: number }> {
    return [...this.subscribers].map(([key, subscribers]) => ({ key, subscribers: subscribers.size }))
  }

  /** Number of keys with at least one subscriber. */
  get keyCount(): number {
    return this.subscribers.size
  }

  subscriberCount(key: string): number {
    return this.subscribers.get(key)?.size ?? 0
  }

  private deliver(subscribers: Set<Subscriber>, delivery: KeyBatch | ResyncNotice, congested?: Congestion[]): void {
    for (const subscriber of subscribers) {
      try {
        const congestion = subscriber(delivery)
        if (congested && isCongestion(congestion)) congested.push(congestion)
      }
      catch (error) {
        // One broken subscriber must not starve the others of the batch.
        this.logger.error(`[live-sync] a subscriber of key ${JSON.stringify(delivery.key)} threw: ${(error as Error)?.stack ?? error}`)
      }
    }
  }
}
