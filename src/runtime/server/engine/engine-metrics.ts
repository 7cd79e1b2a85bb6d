/**
 * The engine's counters: a few integer increments per dispatched
 * transaction (never per row), a commit → dispatch latency histogram with
 * fixed buckets, and per-second rates kept in a ring of one-second slots.
 * Read by `LiveSyncEngine.stats()` and the metrics endpoint.
 */
import type { ResyncReason } from '../../shared/protocol'

/** Upper bounds of the commit → dispatch latency histogram, in seconds. */
export const LATENCY_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Seconds the rates are averaged over. */
const RATE_WINDOW = 10
/** The window's complete seconds and the current one. */
const SLOTS = RATE_WINDOW + 1

export interface LatencyHistogram {
  /** Cumulative counts: `count` is the transactions dispatched within `le` seconds of their commit. */
  buckets: Array<{ le: number, count: number }>
  /** Transactions observed. */
  count: number
  /** Sum of their latencies, in seconds. */
  sum: number
}

/**
 * Wall-clock time in ms with sub-millisecond resolution (Postgres stamps
 * commits in microseconds; `Date.now()` would round every latency to 0 or 1 ms).
 */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now()
}

export class EngineMetrics {
  transactions = 0
  rows = 0
  /** Replication sessions started again after the previous one failed. */
  reconnects = 0
  /** Resync notices delivered to subscribers, by reason. */
  readonly resyncs: Record<ResyncReason, number> = { 'gap': 0, 'truncate': 0, 'too-old': 0 }
  /** Latency counts per bucket (not cumulative); the last one is +Inf. */
  private readonly latencyCounts = Array.from({ length: LATENCY_BUCKETS.length + 1 }, () => 0)
  private latencySum = 0
  private latencyCount = 0
  /** Transactions and rows of each of the last seconds (the current one too), by second modulo SLOTS. */
  private readonly slotSecond = Array.from({ length: SLOTS }, () => -1)
  private readonly slotTransactions = Array.from({ length: SLOTS }, () => 0)
  private readonly slotRows = Array.from({ length: SLOTS }, () => 0)

  /** A transaction was dispatched `now` (ms, `preciseNow()`), committed at `commitTime` (ms). */
  dispatched(commitTime: number, rows: number, now: number): void {
    this.transactions++
    this.rows += rows
    const latency = commitTime > 0 ? Math.max(0, (now - commitTime) / 1000) : 0
    let bucket = 0
    while (bucket < LATENCY_BUCKETS.length && latency > LATENCY_BUCKETS[bucket]!) bucket++
    this.latencyCounts[bucket]!++
    this.latencyCount++
    this.latencySum += latency
    const second = Math.floor(now / 1000)
    const slot = second % SLOTS
    if (this.slotSecond[slot] !== second) {
      this.slotSecond[slot] = second
      this.slotTransactions[slot] = 0
      this.slotRows[slot] = 0
    }
    this.slotTransactions[slot]!++
    this.slotRows[slot]! += rows
  }

  resynced(reason: ResyncReason, deliveries: number): void {
    this.resyncs[reason] += deliveries
  }

  latency(): LatencyHistogram {
    let cumulative = 0
    const buckets = LATENCY_BUCKETS.map((le, i) => ({ le, count: (cumulative += this.latencyCounts[i]!) }))
    buckets.push({ le: Number.POSITIVE_INFINITY, count: this.latencyCount })
    return { buckets, count: this.latencyCount, sum: this.latencySum }
  }

  /** Transactions and rows per second over the last complete seconds. */
  rates(now: number): { transactions: number, rows: number } {
    const current = Math.floor(now / 1000)
    let transactions = 0
    let rows = 0
    for (let slot = 0; slot < SLOTS; slot++) {
      const second = this.slotSecond[slot]!
      if (second < current && second >= current - RATE_WINDOW) {
        transactions += this.slotTransactions[slot]!
        rows += this.slotRows[slot]!
      }
    }
    return { transactions: transactions / RATE_WINDOW, rows: rows / RATE_WINDOW }
  }
}
