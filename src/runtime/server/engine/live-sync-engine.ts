/**
 * The replication engine: every transaction committed to Postgres becomes,
 * per subscription key, one batch of changes shaped like the app's Sequelize
 * models, dispatched in commit order; its LSN is acknowledged only after
 * that. Framework-free: the Nitro plugin and the tests drive it the same way.
 */
import { randomBytes } from 'node:crypto'
import type { ClientConfig } from 'pg'
import type { Sequelize } from 'sequelize'
import { compareLsn, maxLsn, nextLsn, type Lsn } from '../../shared/lsn'
import { keyString, type KeyValue, type ModelMeta, type ResyncReason, type Row, type SnapshotModel } from '../../shared/protocol'
import { ChangeRouter, KeyedChanges, type ViewTouches } from './change-router'
import { resolveConnectionConfig } from './connection-config'
import { DEFAULT_DECODING_WORK_MEM, isMemorySize } from './decoding-work-mem'
import type { ClusterHost, ClusterSubscription, EngineCluster } from './engine-cluster'
import { EngineMetrics, preciseNow } from './engine-metrics'
import { LiveSyncError, type LiveSyncLogger } from './errors'
import { describeChanges, type EngineFeedEntry, type LiveSyncEngineStats, type PeerStats } from './engine-stats'
import { KeyBatch, type Congestion, type Subscriber } from './key-batch'
import { liveSyncLogger } from './logger'
import type { PgoutputMessage } from './pgoutput-decoder'
import { preflight } from './preflight'
import type { ReplayBufferOptions } from './replay-buffer'
import { ReplicationStream } from './replication-stream'
import { inspectSlot, type SlotInspection } from './slot-inspection'
import type { ParserLookup } from './row-shaper'
import { readKeyPages, resolveSnapshotModels, snapshotModelMeta, type ResolvedSnapshotModel } from './snapshot-reader'
import { SubscriptionHub } from './subscription-hub'
import { ViewReader, waitUntilVisible } from './view-reader'
import { discoverWatchedModels, type WatchedModel } from './watch-registry'

export interface LiveSyncEngineOptions {
  /** The app's Sequelize instance; its models with `liveSync` options are watched. */
  sequelize: Sequelize
  /** Connection for replication; defaults to the Sequelize instance's settings. */
  connection?: string | ClientConfig | null
  /** Publication to stream (created by the migration). */
  publication?: string
  /**
   * At start-up, add each watched table to the publication and make it
   * REPLICA IDENTITY FULL where the connecting role may (default true);
   * `false` only warns, with the SQL that fixes it.
   */
  manageTables?: boolean
  logger?: LiveSyncLogger
  /** How much recent history is kept for replaying to late subscribers. */
  replay?: ReplayBufferOptions
  /** Reconnect backoff after the replication connection fails, in ms. */
  retry?: { minDelayMs?: number, maxDelayMs?: number }
  /** Silence after which the replication connection counts as dead, in ms. */
  idleTimeoutMs?: number
  /**
   * How far back `snapshotCursor()` looks, in ms: a transaction that was just
   * decoded may not be visible to a new snapshot yet, so a page's cursor
   * stays this much behind; replaying a little extra is harmless.
   */
  snapshotMarginMs?: number
  /**
   * Keys whose routing is explained at debug level (`liveSync.debugKeys`):
   * each transaction's changes for them, subscriptions, replays, resyncs.
   */
  debugKeys?: Iterable<KeyValue>
  /** Keep the last this many dispatched transactions in `feed` (for the DevTools tab; 0, the default, keeps none). */
  feedSize?: number
  /** The socket counters `stats()` reports alongside the engine's (the Nitro route keeps them). */
  peerStats?: () => PeerStats
  /**
   * Cluster mode (several instances; see src/runtime/server/cluster/): only
   * the leader streams, from a permanent slot, and hands each transaction to
   * the cluster; every instance's hub is fed by the cluster. Set by the Nitro
   * plugin when `liveSync.redis` is configured.
   */
  cluster?: EngineCluster | null
  /**
   * How large transactions are streamed to sockets in parts as they
   * arrive (single-instance mode; in cluster mode a transaction goes to Redis whole).
   */
  streaming?: StreamingOptions
}

/**
 * Bounds of a large transaction in flight. A key's changes are sent as a
 * part once they reach `chunkChars`, every key's once all held reach
 * `maxHeldChars`; parts go out only when every earlier transaction has been
 * dispatched, and while a subscriber drains the replication stream waits
 * (up to `drainTimeoutMs`, then that subscriber is closed as a slow consumer).
 */
export interface StreamingOptions {
  /** Characters of one key's changes sent as one part (default 256 KiB). */
  chunkChars?: number
  /** Characters of changes held across keys before all are sent (default 4 MiB). */
  maxHeldChars?: number
  /**
   * How long a congested subscriber may take nothing (its unsent bytes not
   * shrinking) before it is closed as a slow consumer, in ms (default 500).
   */
  stallMs?: number
  /** How long the stream waits for one congested subscriber at most, however slowly it drains, in ms (default 5000). */
  drainTimeoutMs?: number
  /**
   * Postgres's `logical_decoding_work_mem` for the replication session
   * (default `'4MB'`; `null` keeps the server's, 64MB unless changed).
   * A transaction that outgrows it is spilled to disk while it is decoded,
   * and at COMMIT Postgres first writes out what it still holds: with the
   * server's 64MB a 1 000 000-row transaction's first part left 94–189 ms
   * after COMMIT in the bench, with 4MB 19–28 ms. Also what one large
   * transaction costs the database server in memory. PostgreSQL 13+.
   */
  decodingWorkMem?: string | null
}

const DEFAULT_CHUNK_CHARS = 256 * 1024
const DEFAULT_MAX_HELD_CHARS = 4 * 1024 * 1024

export interface SnapshotOptions {
  /**
   * Wait until everything dispatched so far is visible to a new snapshot and
   * use that as the cursor (for a page that has already applied changes up
   * to now); otherwise the cursor is `snapshotCursor()`, a little behind.
   */
  settle?: boolean
  /** Rows per query and per page handed to `onPage` (default 500). */
  pageSize?: number
  /** Checked between pages: stop reading when it says so. */
  aborted?: () => boolean
}

export interface SnapshotResult {
  /** Every transaction up to here is in the snapshot. */
  cursor: Lsn | null
  /** The id attributes of the snapshot's models. */
  models: Record<string, ModelMeta>
}

/** A committed transaction waiting to be dispatched. */
interface CommittedTx {
  cursor: Lsn
  /** When Postgres committed it (ms since the epoch). */
  commitTime: number
  /** Parts already sent per key (a large transaction streamed as it arrived), and their cursor. */
  parts: Map<string, number> | null
  partCursor: Lsn | null
  /** Rows of its parts kept for replay; -1 once it was too large to keep. */
  recorded: number
  xid: number
  keyed: KeyedChanges | null
  touches: ViewTouches | null
  truncated: Set<string> | null
  broken: boolean
  stream: ReplicationStream
}

/** Transactions waiting for a read-back beyond which the replication connection is paused. */
const MAX_PENDING_TRANSACTIONS = 1000
/** Cluster mode: keys of a transaction too large for Redis whose subscribers are told to reload; past it, every key's. */
const MAX_OVERSIZED_KEYS = 10_000

export type EngineStatus = 'idle' | 'starting' | 'streaming' | 'reconnecting' | 'error' | 'stopped'

export interface EngineSubscription {
  unsubscribe: () => void
  /** Everything after this cursor will reach the subscriber live. */
  cursor: Lsn | null
  /** Batches replayed to the subscriber before it went live. */
  replayed: number
  /** `since` was older than the replay history: the subscriber must resync. */
  tooOld: boolean
}

const PUBLICATION_RE = /^[a-z_][\w$]{0,62}$/i

export class LiveSyncEngine {
  readonly watched: WatchedModel[]
  readonly hub: SubscriptionHub
  readonly publication: string
  status: EngineStatus = 'idle'
  lastError: LiveSyncError | null = null
  /** Identifies the current replication session (in cluster mode the shared history); a new one means a gap was possible. */
  epoch = ''
  /**
   * The replication stream's own status. Single-instance mode: `status`.
   * Cluster mode: `status` says whether this instance gets the changes
   * (Redis); this whether it streams them ('idle' on a follower).
   */
  replicationStatus: EngineStatus = 'idle'
  /** Everything up to here has been dispatched. */
  cursor: Lsn | null = null
  /** What a client needs to know of each watched model. */
  readonly models: Record<string, ModelMeta>

  private readonly sequelize: Sequelize
  private readonly logger: LiveSyncLogger
  private readonly config: ClientConfig
  private readonly options: LiveSyncEngineOptions
  private readonly cluster: EngineCluster | null
  /** Cluster mode: this instance holds the leadership (and streams the slot). */
  private leading = false
  /** Cluster mode: transactions handed to the cluster and not confirmed yet. */
  private publishing = 0
  /** Cluster mode: characters of changes in them. */
  private publishingChars = 0
  /** Cluster mode: a position (keepalive) being published, and the newest one waiting. */
  private positioning = false
  private idlePosition: Lsn | null = null
  private router: ChangeRouter | null = null
  private stream: ReplicationStream | null = null
  private tx: KeyedChanges | null = null
  /** The open transaction's parts sent per key, their cursor (just past its commit's start LSN), and rows kept for replay (-1: not kept). */
  private txParts: Map<string, number> | null = null
  private txCursor: Lsn | null = null
  private txRecorded = 0
  /** Parts of the open transaction wait (the stream is paused) for earlier transactions or draining sockets. */
  private partsWaiting = false
  /** Subscribers that took a part and have not drained yet: the stream waits for them. */
  private congestion: { list: Array<{ congestion: Congestion, since: number, backlog: number, progressAt: number }>, timer: NodeJS.Timeout } | null = null
  private xid = 0
  private truncated: Set<string> | null = null
  /** Committed transactions waiting (in commit order) for a read-back before dispatch. */
  private pending: CommittedTx[] = []
  private draining = false
  /** Remembers which view rows were in their view: a new session starts without (changes between sessions were not seen). */
  private viewReader = new ViewReader()
  private readonly byName: Map<string, WatchedModel>
  private recent: Array<{ cursor: Lsn, at: number }> = []
  /** The cursor just before `recent[0]`. */
  private recentBase: Lsn | null = null
  /** A change of the open transaction could not be shaped (a bug): resync its subscribers. */
  private txBroken = false
  private attempt = 0
  private retryTimer: NodeJS.Timeout | null = null
  private running: Promise<void> | null = null
  private stopped = false
  private lastReported = ''
  private readonly statusListeners = new Set<(status: EngineStatus) => void>()
  /** Counters of dispatched transactions, resyncs, reconnects (see `stats()`). */
  readonly metrics = new EngineMetrics()
  /** The last dispatched transactions, newest last, when `feedSize` asks for them. */
  readonly feed: EngineFeedEntry[] | null
  /** The current replication session's slot (temporary: it goes with the session). */
  slotName: string | null = null
  /** Commit time of the transaction being received (from its begin message). */
  private txCommitTime = 0
  private readonly debugKeys: Set<string> | null
  private inspection: { at: number, result: Promise<SlotInspection | null> } | null = null
  private publicationInspection: { at: number, result: Promise<SlotInspection | null> } | null = null

  constructor(options: LiveSyncEngineOptions) {
    if (!options?.sequelize || typeof options.sequelize.getDialect !== 'function') {
      throw new LiveSyncError('CONFIG', 'createLiveSyncEngine needs { sequelize }: the app\'s Sequelize instance.')
    }
    if (options.sequelize.getDialect() !== 'postgres') {
      throw new LiveSyncError('CONFIG', `live sync needs PostgreSQL; the Sequelize instance uses ${options.sequelize.getDialect()}.`)
    }
    this.options = options
    this.sequelize = options.sequelize
    this.publication = options.publication ?? 'live_sync'
    if (!PUBLICATION_RE.test(this.publication)) {
      throw new LiveSyncError('CONFIG', `publication name ${JSON.stringify(this.publication)} is not a plain identifier (letters, digits, _).`)
    }
    this.logger = options.logger ?? liveSyncLogger()
    const debugKeys = new Set([...options.debugKeys ?? []].map(key => keyString(key)!))
    this.debugKeys = debugKeys.size > 0 ? debugKeys : null
    this.feed = (options.feedSize ?? 0) > 0 ? [] : null
    this.config = resolveConnectionConfig(this.sequelize, options.connection)
    this.watched = discoverWatchedModels(this.sequelize)
    this.models = Object.fromEntries(this.watched.map(watch => [watch.name, { id: watch.id.map(id => id.attribute) }]))
    this.byName = new Map(this.watched.map(watch => [watch.name, watch]))
    this.hub = new SubscriptionHub(this.logger, options.replay)
    this.cluster = options.cluster ?? null
    const workMem = options.streaming?.decodingWorkMem
    if (workMem !== undefined && workMem !== null && !isMemorySize(workMem)) {
      throw new LiveSyncError('CONFIG', `streaming.decodingWorkMem must be a size such as '4MB' (kB, MB or GB) or null, got ${JSON.stringify(workMem)}.`)
    }
  }

  /** `single` without a cluster; in cluster mode whether this instance streams the slot. */
  get role(): 'single' | 'leader' | 'follower' {
    return this.cluster ? (this.leading ? 'leader' : 'follower') : 'single'
  }

  /**
   * Starts streaming. Resolves once the first attempt has streamed or failed:
   * a misconfigured database is reported once (with the fix) and retried in
   * the background, never thrown, so the host app keeps serving.
   */
  start(): Promise<void> {
    if (this.running) return this.running
    this.stopped = false
    if (this.watched.length === 0) this.logger.warn('[live-sync] no Sequelize model has liveSync watch options; nothing will be streamed.')
    this.running = this.cluster ? this.cluster.start(this.clusterHost()) : this.connect()
    return this.running
  }

  /** Stops streaming; resolves when Postgres no longer holds our slot (a permanent one is let go, not dropped). */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.retryTimer = null
    if (this.cluster) return this.stopCluster(this.cluster)
    const stream = this.stream
    this.stream = null
    await this.running?.catch(() => {})
    this.pending = []
    this.clearCongestion()
    await stream?.stop()
    // A connect() that was under way may have opened a stream meanwhile.
    await (this.stream as ReplicationStream | null)?.stop()
    this.stream = null
    this.running = null
    const wasRunning = this.status !== 'stopped' && this.status !== 'idle'
    this.setReplication('stopped')
    if (wasRunning) this.logger.info(`[live-sync] stopped${stream ? '; its temporary replication slot is dropped' : ''}.`)
    this.slotName = null
  }

  /**
   * Cluster mode: a leader hands over without a gap. What it handed to
   * Redis is confirmed and acknowledged, the slot let go, and only then the
   * leadership, so a follower takes over at once from the slot's position
   * (what was decoded but not published yet it streams again).
   */
  private async stopCluster(cluster: EngineCluster): Promise<void> {
    const stream = this.stream
    if (stream) {
      stream.pause()
      const deadline = Date.now() + 5000
      while ((this.publishing > 0 || this.positioning) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
    }
    this.stream = null
    this.pending = []
    await stream?.stop()
    await this.running?.catch(() => {})
    await (this.stream as ReplicationStream | null)?.stop()
    this.stream = null
    await cluster.stop()
    this.leading = false
    this.running = null
    this.replicationStatus = 'stopped'
    this.slotName = null
    this.setStatus('stopped')
  }

  /** What the cluster may do to this engine. */
  private clusterHost(): ClusterHost {
    const cursor = () => this.cursor
    return {
      hub: this.hub,
      lead: () => this.lead(),
      follow: () => this.follow(),
      advance: cursor => this.advance(cursor, Date.now()),
      serve: (status, epoch) => {
        this.epoch = epoch
        this.setStatus(status)
      },
      resyncAll: (reason, cursor, tables, keys) => this.resyncAll(reason, cursor, tables, keys),
      get cursor() {
        return cursor()
      },
    }
  }

  /** Cluster mode: this instance won the election; it streams the slot until it stops or loses it. */
  private lead(): void {
    if (this.stopped || this.leading) return
    this.leading = true
    this.attempt = 0
    this.running = this.connect()
  }

  /** Cluster mode: the leadership is gone (its connection died): stop streaming at once, another instance may lead. */
  private async follow(): Promise<void> {
    this.leading = false
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.retryTimer = null
    const stream = this.stream
    this.stream = null
    this.pending = []
    await stream?.stop()
    this.setReplication('idle')
  }

  /** Stopped, or (cluster mode) not the leader: no stream may be opened. */
  private get halted(): boolean {
    return this.stopped || (this.cluster !== null && !this.leading)
  }

  /**
   * Subscribes to a key. With `since`, first replays (synchronously) the
   * key's batches after that cursor, so nothing between a page's data load
   * and its subscription is lost; or reports `tooOld` when the history does
   * not reach back that far.
   */
  subscribe(key: KeyValue, subscriber: Subscriber, since?: Lsn | null): EngineSubscription {
    if (this.cluster) throw new LiveSyncError('CONFIG', 'in cluster mode a subscription reads the shared history from Redis: use join() instead of subscribe().')
    const routed = keyString(key)!
    let replayed = 0
    let tooOld = false
    if (since) {
      // With the parts of a transaction still arriving: the rest follow live.
      const batches = this.cursor ? this.hub.buffer.since(routed, since) : null
      if (batches === null) tooOld = true
      else for (const batch of batches) {
        subscriber(batch)
        replayed++
      }
    }
    const unsubscribe = this.hub.subscribe(routed, subscriber)
    if (this.debugKeys?.has(routed)) {
      this.explain(routed, `subscribed${since ? ` since ${since}` : ''}: ${tooOld ? `the history does not reach back that far (it starts after ${this.hub.buffer.floor}): resync too-old` : `replayed ${replayed} batch(es)`}; ${this.hub.subscriberCount(routed)} subscriber(s), live from ${this.cursor}.`)
      return {
        unsubscribe: () => {
          unsubscribe()
          this.explain(routed, `a subscriber left; ${this.hub.subscriberCount(routed)} remain.`)
        },
        cursor: this.cursor,
        replayed,
        tooOld,
      }
    }
    return { unsubscribe, cursor: this.cursor, replayed, tooOld }
  }

  /** Logs `message` at debug level when `key` is one of `debugKeys`. */
  explain(key: string, message: string): void {
    if (this.debugKeys?.has(key)) this.logger.debug?.(`[live-sync] key ${JSON.stringify(key)}: ${message}`)
  }

  /**
   * Everything there is to count, for health checks and the metrics
   * endpoint: the slot's lag (asked of Postgres at most once a second, on a
   * connection of its own), transactions and rows (totals and per second),
   * the commit → dispatch latency histogram, keys, subscribers, the replay
   * history, resyncs, reconnects, and the socket counters.
   */
  async stats(): Promise<LiveSyncEngineStats> {
    const inspected = await this.inspect()
    const now = preciseNow()
    const rates = this.metrics.rates(now)
    // The oldest transaction received and not dispatched yet: how long it has waited since its commit.
    const waiting = this.pending[0]?.commitTime ?? (this.tx ? this.txCommitTime : 0)
    return {
      status: this.status,
      cursor: this.cursor,
      epoch: this.epoch,
      slot: this.slotName,
      lag: { bytes: inspected?.lagBytes ?? null, seconds: waiting > 0 ? Math.max(0, (now - waiting) / 1000) : 0 },
      transactions: { total: this.metrics.transactions, perSecond: rates.transactions },
      rows: { total: this.metrics.rows, perSecond: rates.rows },
      latency: this.metrics.latency(),
      keys: this.hub.keyCount,
      subscribers: this.hub.subscriberTotal,
      replay: this.hub.buffer.size,
      resyncs: { ...this.metrics.resyncs },
      reconnects: this.metrics.reconnects,
      ...this.options.peerStats?.(),
    }
  }

  /**
   * The publication's tables as Postgres lists them, and whether it is
   * `FOR ALL TABLES` (for the DevTools tab; asked at most every 5 s); null
   * when the database cannot be asked.
   */
  async publicationTables(): Promise<{ tables: string[], allTables: boolean } | null> {
    const now = Date.now()
    if (!this.publicationInspection || now - this.publicationInspection.at > 5000) {
      const result = inspectSlot(this.config, this.slotName ?? '', this.publication).catch(() => null)
      this.publicationInspection = { at: now, result }
    }
    const inspected = await this.publicationInspection.result
    return inspected ? { tables: inspected.publicationTables ?? [], allTables: inspected.allTables ?? false } : null
  }

  /** The slot's lag, asked of Postgres at most once a second (callers share one query). */
  private inspect(): Promise<SlotInspection | null> {
    const slot = this.slotName
    if (!slot || this.status !== 'streaming') return Promise.resolve(null)
    const now = Date.now()
    if (this.inspection && now - this.inspection.at < 1000) return this.inspection.result
    const result = inspectSlot(this.config, slot).catch(() => null)
    this.inspection = { at: now, result }
    return result
  }

  /**
   * The key's batches after `since` up to the cursor (not the parts of a
   * transaction still arriving), or `null` when they are no longer all held.
   */
  replay(key: KeyValue, since: Lsn): KeyBatch[] | null {
    if (this.cluster) throw new LiveSyncError('CONFIG', 'in cluster mode the history is in Redis: use readHistory() instead of replay().')
    const cursor = this.cursor
    if (!cursor) return null
    const batches = this.hub.buffer.since(keyString(key)!, since)
    return batches && batches.filter(batch => compareLsn(batch.cursor, cursor) <= 0)
  }

  /**
   * `subscribe()` in either mode: synchronous in single-instance mode; in
   * cluster mode it resolves once the key's history was read from Redis.
   * Replayed batches are delivered inside `burst`; call `live()` once the
   * subscriber was told it is subscribed (later batches wait for it).
   */
  join(key: KeyValue, subscriber: Subscriber, since: Lsn | null | undefined, burst: (deliver: () => void) => void): ClusterSubscription | Promise<ClusterSubscription> {
    if (this.cluster) return this.cluster.subscribe(keyString(key)!, subscriber, since, burst)
    let subscription!: EngineSubscription
    burst(() => (subscription = this.subscribe(key, subscriber, since)))
    return { ...subscription, live: () => {} }
  }

  /** `replay()` in either mode (in cluster mode read from Redis). */
  readHistory(key: KeyValue, since: Lsn): KeyBatch[] | null | Promise<KeyBatch[] | null> {
    return this.cluster ? this.cluster.replay(keyString(key)!, since) : this.replay(key, since)
  }

  /**
   * A cursor that a page may load its data after: every transaction up to
   * it is visible to a snapshot taken now.
   */
  snapshotCursor(now = Date.now()): Lsn | null {
    const settled = now - (this.options.snapshotMarginMs ?? 100)
    for (let i = this.recent.length - 1; i >= 0; i--) {
      if (this.recent[i]!.at <= settled) return this.recent[i]!.cursor
    }
    return this.recentBase ?? this.cursor
  }

  /**
   * Like `snapshotCursor()`, but waits until every transaction dispatched so
   * far is visible to a new snapshot (the margin after the newest one), and
   * resolves with the cursor of the newest one.
   */
  async settledCursor(): Promise<Lsn | null> {
    const cursor = this.cursor
    const newest = this.recent.at(-1)
    if (cursor && newest?.cursor === cursor) {
      const wait = newest.at + (this.options.snapshotMarginMs ?? 100) - Date.now()
      if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
    }
    return cursor
  }

  /** Checks a snapshot request's models (throws a `LiveSyncError` with code SNAPSHOT). */
  resolveSnapshot(models: readonly SnapshotModel[]): ResolvedSnapshotModel[] {
    return resolveSnapshotModels(this.byName, models)
  }

  /**
   * Reads the current rows of `key` for each of `models` through the app's
   * Sequelize models, handing them to `onPage` page by page (in the order of
   * `models`, each in id order). Every transaction up to the returned cursor
   * is in the snapshot; later ones are the subscriber's to apply.
   */
  async snapshot(key: KeyValue, models: readonly SnapshotModel[], onPage: (index: number, rows: Row[]) => void | Promise<void>, options: SnapshotOptions = {}): Promise<SnapshotResult> {
    const parts = this.resolveSnapshot(models)
    // Taken before the read: what is visible now is at least this new.
    const cursor = options.settle ? await this.settledCursor() : this.snapshotCursor()
    const pageSize = options.pageSize ?? 500
    for (const [index, part] of parts.entries()) {
      await readKeyPages(part, key, pageSize, rows => onPage(index, rows), options.aborted)
    }
    return { cursor, models: snapshotModelMeta(parts) }
  }

  /** Resolves when the engine reaches `status` (for tests and health checks). */
  waitFor(status: EngineStatus, timeoutMs = 10_000): Promise<void> {
    if (this.status === status) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.statusListeners.delete(listener)
        reject(new Error(`[live-sync] engine did not reach '${status}' within ${timeoutMs} ms (it is '${this.status}'${this.lastError ? `: ${this.lastError.message}` : ''})`))
      }, timeoutMs)
      const listener = (current: EngineStatus) => {
        if (current !== status) return
        clearTimeout(timer)
        this.statusListeners.delete(listener)
        resolve()
      }
      this.statusListeners.add(listener)
    })
  }

  private setStatus(status: EngineStatus): void {
    if (this.status === status) return
    this.status = status
    for (const listener of [...this.statusListeners]) listener(status)
  }

  /** The replication stream's status, which is the engine's unless a cluster feeds the hub. */
  private setReplication(status: EngineStatus): void {
    this.replicationStatus = status
    if (!this.cluster) this.setStatus(status)
  }

  private async connect(): Promise<void> {
    const reconnecting = this.cluster ? this.replicationStatus !== 'idle' : this.epoch !== ''
    this.setReplication(reconnecting ? 'reconnecting' : 'starting')
    let stream: ReplicationStream | null = null
    try {
      // A first connection makes Sequelize learn the OIDs of enums, ranges, ….
      await this.sequelize.authenticate({ logging: false })
      const tables = this.watched.map(watch => watch.table).filter((t, i, all) => all.indexOf(t) === i)
      const { warnings, changes } = await preflight(this.config, this.publication, tables, { manageTables: this.options.manageTables, slotName: this.cluster?.slotName })
      for (const change of changes) this.logger.info(change)
      if (this.halted) return
      if (!reconnecting) for (const warning of warnings) this.logger.warn(warning)
      const connectionManager = (this.sequelize as unknown as { connectionManager: { getTypeParser: ParserLookup } }).connectionManager
      this.router = new ChangeRouter(this.watched, oid => connectionManager.getTypeParser(oid), this.logger)
      this.tx = null
      this.truncated = null
      const cluster = this.cluster
      // A position of an earlier session must not be confirmed in this one.
      this.idlePosition = null
      stream = new ReplicationStream({
        config: this.config,
        publication: this.publication,
        slotName: (this.slotName = cluster?.slotName ?? `live_sync_${process.pid}_${randomBytes(4).toString('hex')}`),
        idleTimeoutMs: this.options.idleTimeoutMs,
        decodingWorkMem: this.options.streaming?.decodingWorkMem === undefined ? DEFAULT_DECODING_WORK_MEM : this.options.streaming.decodingWorkMem,
        dispatched: () => this.pending.length === 0,
        onMessage: message => this.onMessage(message, stream!),
        // Cluster mode: a permanent slot, so that the next leader continues where this one was acknowledged.
        ...(cluster && {
          permanent: true,
          beforeStart: (point: Lsn, created: boolean) => cluster.begin(point, created),
          onIdlePosition: (lsn: Lsn) => {
            if (this.pending.length === 0) this.positionAt(lsn, stream!)
          },
        }),
      })
      this.stream = stream
      const consistentPoint = await stream.start()
      if (this.halted) return
      this.began(consistentPoint, reconnecting)
      void stream.closed.then(error => this.onClosed(stream!, error))
    }
    catch (error) {
      if (this.stream === stream) this.stream = null
      await stream?.stop().catch(() => {})
      if (this.halted) return
      this.report(error)
      this.setReplication('error')
      this.scheduleRetry()
    }
  }

  private began(consistentPoint: Lsn, reconnecting: boolean): void {
    this.attempt = 0
    if (this.cluster) {
      // The history, cursor and epoch are the cluster's; a permanent slot loses nothing between sessions.
      this.pending = []
      this.viewReader = new ViewReader()
      this.lastReported = ''
      this.lastError = null
      this.txBroken = false
      this.logger.info(`[live-sync] this instance leads: it streams slot "${this.cluster.slotName}" from ${consistentPoint} and publishes to Redis.`)
      this.setReplication('streaming')
      return
    }
    this.epoch = randomBytes(6).toString('hex')
    // Nothing from before the new slot can be replayed: the history restarts here.
    this.hub.buffer.reset(consistentPoint)
    // Transactions of the previous session still waiting are covered by the resync below.
    this.pending = []
    this.clearCongestion()
    this.partsWaiting = false
    this.txParts = null
    this.viewReader = new ViewReader()
    this.recent = []
    this.recentBase = consistentPoint
    this.cursor = consistentPoint
    if (reconnecting) this.metrics.reconnects++
    const tables = new Set(this.watched.map(watch => watch.table)).size
    this.logger.info(reconnecting
      ? `[live-sync] replication is streaming again from ${consistentPoint} (slot ${this.slotName}); subscribers were told to resync.`
      : `[live-sync] streaming ${tables} watched table(s) of publication "${this.publication}" from ${consistentPoint} (slot ${this.slotName}).`)
    this.lastReported = ''
    this.lastError = null
    this.txBroken = false
    this.setStatus('streaming')
    // Whoever subscribed before this stream began (a reconnect, or sockets that
    // arrived while the database was unreachable) may have missed changes.
    if (reconnecting || this.hub.keyCount > 0) this.resyncAll('gap', this.cursor)
  }

  /** Tells every subscribed key to resync, counting it (and explaining it for `debugKeys`). */
  private resyncAll(reason: ResyncReason, cursor: Lsn | null, tables?: string[], keys?: readonly string[]): void {
    this.metrics.resynced(reason, this.hub.resyncAll(reason, cursor, tables, keys))
    if (this.debugKeys) {
      for (const key of this.debugKeys) {
        if (this.hub.subscriberCount(key) > 0 && (!keys || keys.includes(key))) this.explain(key, `resync (${reason}${tables ? `: ${tables.join(', ')}` : ''}) at ${cursor}.`)
      }
    }
  }

  private onClosed(stream: ReplicationStream, error: Error | null): void {
    if (this.halted || this.stream !== stream) return
    this.stream = null
    void stream.stop()
    this.report(error ?? new LiveSyncError('REPLICATION', 'replication stream ended'))
    this.setReplication('reconnecting')
    this.scheduleRetry()
  }

  private scheduleRetry(): void {
    if (this.halted || this.retryTimer) return
    const min = this.options.retry?.minDelayMs ?? 500
    // Cluster mode: Redis coming back must not wait long for the leader.
    const max = this.options.retry?.maxDelayMs ?? (this.cluster ? 2000 : 30_000)
    const delay = Math.min(max, min * 2 ** this.attempt++) * (0.5 + Math.random() / 2)
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      this.running = this.connect()
    }, delay)
    this.retryTimer.unref?.()
  }

  /** Logs an error once; the same error again (a retry failing alike) stays quiet. */
  private report(error: unknown): void {
    const liveSyncError = error instanceof LiveSyncError
      ? error
      : new LiveSyncError('REPLICATION', (error as Error)?.message ?? String(error), { cause: error })
    this.lastError = liveSyncError
    const signature = `${liveSyncError.code}:${liveSyncError.message}`
    if (signature === this.lastReported) return
    this.lastReported = signature
    this.logger.error(liveSyncError.message)
  }

  private onMessage(message: PgoutputMessage, stream: ReplicationStream): void {
    try {
      this.handle(message, stream)
    }
    catch (error) {
      // Never let a bad value escape into pg's socket handler; the
      // transaction's subscribers are told to resync instead.
      this.txBroken = true
      this.report(new LiveSyncError('REPLICATION', `could not process a ${message.tag} message: ${(error as Error)?.stack ?? error}`, { cause: error }))
    }
  }

  private handle(message: PgoutputMessage, stream: ReplicationStream): void {
    const router = this.router!
    switch (message.tag) {
      case 'begin':
        this.tx = this.newChanges()
        this.xid = message.xid
        this.txCommitTime = message.commitTime
        this.truncated = null
        this.txParts = null
        // Every cursor handed out before this transaction's commit is at most its start; the commit's end is after it.
        this.txCursor = nextLsn(message.finalLsn)
        this.txRecorded = 0
        router.takeTouches()
        return
      case 'relation':
        router.relation(message)
        return
      case 'insert':
        router.insert(message, this.tx ??= this.newChanges())
        break
      case 'update':
        router.update(message, this.tx ??= this.newChanges())
        break
      case 'delete':
        router.delete(message, this.tx ??= this.newChanges())
        break
      case 'truncate':
        for (const table of router.truncated(message)) (this.truncated ??= new Set()).add(table)
        return
      case 'commit':
        this.commit({
          cursor: message.commitEndLsn,
          commitTime: message.commitTime,
          parts: this.txParts,
          partCursor: this.txCursor,
          recorded: this.txRecorded,
          xid: this.xid,
          keyed: this.tx,
          touches: router.takeTouches(),
          truncated: this.truncated,
          broken: this.txBroken,
          stream,
        })
        return
      default:
        return
    }
    const tx = this.tx!
    if (tx.chars < this.maxHeldChars && tx.ready.length === 0) return
    if (!this.cluster) this.sendParts(stream)
    else if (tx.chars >= this.maxHeldChars) this.oversize(tx)
  }

  /**
   * Cluster mode: a transaction goes to Redis whole, in one script call, so
   * one that outgrows `maxHeldChars` is not held (nor sent) at all: its
   * subscribers are told to reload their keys once it commits. Keeps the
   * leader's memory, and Redis' time per call, bounded for any size.
   */
  private oversize(tx: KeyedChanges): void {
    tx.dropChanges(MAX_OVERSIZED_KEYS)
    this.logger.info(`[live-sync] a transaction (xid ${this.xid}) holds more than ${this.maxHeldChars} characters of changes: in cluster mode it is not sent through Redis; the subscribers of its keys reload them once it commits.`)
  }

  private newChanges(): KeyedChanges {
    // Cluster mode hands whole transactions to Redis: no parts.
    return new KeyedChanges(this.cluster ? Number.POSITIVE_INFINITY : (this.options.streaming?.chunkChars ?? DEFAULT_CHUNK_CHARS))
  }

  private get maxHeldChars(): number {
    return this.options.streaming?.maxHeldChars ?? DEFAULT_MAX_HELD_CHARS
  }

  /**
   * Sends the open transaction's full keys (or, over `maxHeldChars`, all of
   * them) as parts, so a large transaction is neither held whole nor sent
   * late. Only when every earlier transaction was dispatched (commit order
   * across keys) and no subscriber is draining; otherwise the stream pauses
   * until then, which bounds what is held by what was already read.
   */
  private sendParts(stream: ReplicationStream): void {
    const tx = this.tx!
    if (this.pending.length > 0 || this.congestion) {
      this.partsWaiting = true
      stream.pause('parts')
      return
    }
    const keys = tx.chars >= this.maxHeldChars ? [...tx.byKey.keys()] : tx.ready
    tx.ready = []
    const cursor = this.txCursor!
    const now = Date.now()
    const congested: Congestion[] = []
    const parts = (this.txParts ??= new Map())
    for (const key of keys) {
      const changes = tx.take(key)
      if (changes.length === 0) continue
      const index = parts.get(key) ?? 0
      parts.set(key, index + 1)
      const batch = new KeyBatch(key, cursor, changes, now, { index, last: false })
      this.hub.publishPart(batch, this.recordPart(batch), congested)
    }
    if (congested.length > 0) this.congest(congested, stream)
  }

  /** Whether a part of the open transaction is kept for replay: not once the transaction outgrew half the history. */
  private recordPart(batch: KeyBatch): boolean {
    if (this.txRecorded < 0) return false
    this.txRecorded += batch.size
    if (this.txRecorded <= this.hub.buffer.maxRows / 2) return true
    // Too large to replay: its parts are forgotten and whoever would need it resyncs.
    this.hub.buffer.discard(batch.cursor)
    this.txRecorded = -1
    return false
  }

  /**
   * Pauses the stream until every congested subscriber drained. One that
   * takes nothing for `stallMs`, or has not drained after `drainTimeoutMs`,
   * is closed as a slow consumer: a stalled socket holds the stream back for
   * half a second, a healthy slower one for as long as it keeps reading.
   */
  private congest(list: Congestion[], stream: ReplicationStream): void {
    const now = Date.now()
    const waiting = list.map(congestion => ({ congestion, since: now, backlog: congestion.backlog(), progressAt: now }))
    if (this.congestion) {
      this.congestion.list.push(...waiting)
      return
    }
    stream.pause('sockets')
    const stallMs = this.options.streaming?.stallMs ?? 500
    const timeoutMs = this.options.streaming?.drainTimeoutMs ?? 5000
    const timer = setInterval(() => {
      const congestion = this.congestion
      if (!congestion) return
      const at = Date.now()
      congestion.list = congestion.list.filter((each) => {
        if (each.congestion.drained()) return false
        const backlog = each.congestion.backlog()
        if (backlog < each.backlog) {
          each.backlog = backlog
          each.progressAt = at
        }
        if (at - each.progressAt <= stallMs && at - each.since <= timeoutMs) return true
        each.congestion.stall()
        return false
      })
      if (congestion.list.length > 0) return
      this.clearCongestion()
      stream.resume('sockets')
      this.resumeParts(stream)
    }, 5)
    this.congestion = { list: waiting, timer }
  }

  private clearCongestion(): void {
    if (this.congestion) clearInterval(this.congestion.timer)
    this.congestion = null
  }

  /** Sends the open transaction's waiting parts once nothing holds them back. */
  private resumeParts(stream: ReplicationStream): void {
    if (!this.partsWaiting || this.pending.length > 0 || this.congestion || stream !== this.stream) return
    this.partsWaiting = false
    stream.resume('parts')
    if (this.tx) this.sendParts(stream)
  }

  /**
   * A transaction of plain tables is dispatched and acknowledged at once
   * (no query, no await). One that touched a view model's base table waits
   * for its read-back, and every later transaction waits behind it, so
   * batches keep commit order across keys.
   */
  private commit(tx: CommittedTx): void {
    this.tx = null
    this.truncated = null
    this.txBroken = false
    this.txParts = null
    if (this.partsWaiting) {
      // What waited is now part of a committed transaction, dispatched in its turn.
      this.partsWaiting = false
      tx.stream.resume('parts')
    }
    if (this.pending.length === 0 && !tx.touches) {
      if (this.cluster) return this.publish(tx)
      this.dispatch(tx)
      tx.stream.acknowledge(tx.cursor)
      return
    }
    this.pending.push(tx)
    if (this.pending.length >= MAX_PENDING_TRANSACTIONS) tx.stream.pause()
    void this.drain()
  }

  private async drain(): Promise<void> {
    if (this.draining) return
    this.draining = true
    try {
      while (this.pending.length > 0) {
        const tx = this.pending[0]!
        if (tx.touches) {
          try {
            await waitUntilVisible(this.sequelize, tx.xid)
            await this.viewReader.readBack(tx.touches, tx.keyed ??= new KeyedChanges())
          }
          catch (error) {
            // The view rows cannot be known: their subscribers must reload.
            tx.broken = true
            this.report(new LiveSyncError('REPLICATION', `could not read back the view rows of a transaction: ${(error as Error)?.message ?? error}`, { cause: error }))
          }
        }
        // A new session began meanwhile (its start told every subscriber to resync).
        if (this.pending[0] !== tx) continue
        this.pending.shift()
        if (tx.stream !== this.stream) continue
        if (this.cluster) {
          this.publish(tx)
        }
        else {
          this.dispatch(tx)
          tx.stream.acknowledge(tx.cursor)
        }
        if (this.relieved) tx.stream.resume()
      }
      if (this.stream) this.resumeParts(this.stream)
    }
    finally {
      this.draining = false
    }
  }

  /** Everything up to `cursor` has been handed to the hub. */
  private advance(cursor: Lsn, now: number): void {
    this.cursor = cursor
    this.recent.push({ cursor, at: now })
    if (this.recent.length > 4096) this.recentBase = this.recent.splice(0, 2048).at(-1)!.cursor
  }

  /**
   * Cluster mode: hands a committed transaction to Redis (every instance's
   * hub, this one's too, gets it from there) and acknowledges it to Postgres
   * once Redis has it. Redis answers in order, so acknowledgements stay in
   * commit order; if it fails, the stream starts again from the slot's
   * confirmed position and Redis skips what it has.
   */
  private publish(tx: CommittedTx): void {
    const stream = tx.stream
    const broken = tx.broken || this.txBroken
    this.txBroken = false
    if (this.stopped) return
    const dropped = tx.keyed?.dropped ?? null
    if (!tx.keyed?.size && !dropped && !tx.truncated && !broken) return this.positionAt(tx.cursor, stream)
    // What waits for Redis is bounded too: in transactions, and in characters.
    const chars = tx.keyed?.chars ?? 0
    this.publishingChars += chars
    if (++this.publishing + this.pending.length >= MAX_PENDING_TRANSACTIONS || this.publishingChars >= this.maxHeldChars) stream.pause()
    const oversized = dropped === 'all' ? 'all' : dropped ? [...dropped] : null
    this.cluster!.publish({ cursor: tx.cursor, xid: tx.xid, keyed: dropped ? null : tx.keyed, truncated: tx.truncated ? [...tx.truncated] : null, broken, oversized }).then(() => {
      this.publishing--
      this.publishingChars -= chars
      let rows = 0
      if (tx.keyed) for (const { changes } of tx.keyed.byKey.values()) rows += changes.length
      this.metrics.dispatched(tx.commitTime, rows, preciseNow())
      if (stream === this.stream) stream.acknowledge(tx.cursor)
      this.relieve()
    }, (error: unknown) => {
      this.publishing--
      this.publishingChars -= chars
      this.onClosed(stream, error as Error)
      this.relieve()
    })
  }

  /** Few enough transactions (and characters, in cluster mode) wait to read from the replication connection again. */
  private get relieved(): boolean {
    return this.publishing + this.pending.length < MAX_PENDING_TRANSACTIONS / 2 && this.publishingChars < this.maxHeldChars / 2 && !this.stopped
  }

  /** Cluster mode: reads from the replication connection again once few transactions wait for Redis. */
  private relieve(): void {
    if (this.relieved) this.stream?.resume()
  }

  /**
   * Cluster mode: a position with nothing to publish before it (a keepalive,
   * or transactions of tables nobody watches) goes to Redis too, then is
   * acknowledged, so Postgres may recycle the WAL behind it. One at a time;
   * the newest waiting one goes next.
   */
  private positionAt(lsn: Lsn, stream: ReplicationStream): void {
    this.idlePosition = maxLsn(this.idlePosition, lsn)
    if (this.positioning || this.stopped) return
    const target = this.idlePosition!
    this.positioning = true
    this.cluster!.publishPosition(target).then(() => {
      this.positioning = false
      if (stream !== this.stream) return
      stream.acknowledge(target)
      const next = this.idlePosition
      if (next && compareLsn(next, target) > 0) this.positionAt(next, stream)
    }, (error: unknown) => {
      this.positioning = false
      this.onClosed(stream, error as Error)
    })
  }

  /** The last part of a streamed transaction's key: the commit's cursor; the client applies the whole transaction then. */
  private publishLast(tx: CommittedTx, key: string, changes: string[], index: number, now: number): void {
    const batch = new KeyBatch(key, tx.cursor, changes, now, { index, last: true })
    let record = tx.recorded >= 0
    if (record && tx.recorded + batch.size > this.hub.buffer.maxRows / 2) {
      this.hub.buffer.discard(tx.partCursor!, tx.cursor)
      tx.recorded = -1
      record = false
    }
    else if (record) tx.recorded += batch.size
    this.hub.publishPart(batch, record, [])
  }

  /** Hands a committed transaction to the hub, one batch per key. */
  private dispatch(tx: CommittedTx): void {
    const now = Date.now()
    const cursor = tx.cursor
    // Postgres streams transactions in commit order; a cursor never goes back.
    if (this.cursor && compareLsn(cursor, this.cursor) < 0) return
    this.advance(cursor, now)
    let rows = 0
    const debugKeys = this.debugKeys
    if (tx.keyed) {
      for (const [key, { changes }] of tx.keyed.byKey) {
        const index = tx.parts?.get(key)
        if (index === undefined) this.hub.publish(key, cursor, changes, now)
        else this.publishLast(tx, key, changes, index, now)
        rows += changes.length
        if (debugKeys !== null && debugKeys.has(key)) this.explain(key, `transaction ${cursor} (xid ${tx.xid}): ${describeChanges(changes)} → ${this.hub.subscriberCount(key)} subscriber(s), ${(preciseNow() - tx.commitTime).toFixed(2)} ms after its commit.`)
      }
    }
    // Keys whose every change went out in parts still get their last (empty) part.
    if (tx.parts) for (const [key, index] of tx.parts) if (!tx.keyed?.byKey.has(key)) this.publishLast(tx, key, [], index, now)
    if (tx.recorded < 0) this.hub.buffer.raiseFloor(cursor)
    const dispatchedAt = preciseNow()
    this.metrics.dispatched(tx.commitTime, rows, dispatchedAt)
    if (this.feed) this.record(tx, rows, dispatchedAt)
    if (tx.truncated) {
      this.hub.buffer.raiseFloor(cursor)
      this.resyncAll('truncate', cursor, [...tx.truncated])
    }
    if (tx.broken || this.txBroken) {
      this.txBroken = false
      this.hub.buffer.raiseFloor(cursor)
      this.resyncAll('gap', cursor)
    }
  }

  /** Keeps a dispatched transaction in `feed` (DevTools). */
  private record(tx: CommittedTx, rows: number, dispatchedAt: number): void {
    const keys: Record<string, number> = {}
    if (tx.keyed) for (const [key, { changes }] of tx.keyed.byKey) keys[key] = changes.length
    this.feed!.push({ cursor: tx.cursor, commitTime: tx.commitTime, dispatchedAt, rows, keys, truncated: tx.truncated ? [...tx.truncated] : [] })
    if (this.feed!.length > (this.options.feedSize ?? 0)) this.feed!.shift()
  }
}

/** Creates the engine for an app's Sequelize instance (see `LiveSyncEngineOptions`). */
export function createLiveSyncEngine(options: LiveSyncEngineOptions): LiveSyncEngine {
  return new LiveSyncEngine(options)
}
