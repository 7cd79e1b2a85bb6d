/**
 * Cluster mode on Redis (`liveSync.redis`): several instances of the app,
 * one replication slot. The walk stays one way, with Redis one more floor
 * in it:
 *
 *   Postgres → leader's stream → decode → route → Redis → every instance's hub → sockets
 *
 * - Election (leader-election.ts): a Postgres advisory lock; the holder
 *   streams the permanent slot `slotName`, the others hold no slot.
 * - Publishing (redis-publisher.ts): each transaction's per-key frames go
 *   to Redis once (idempotent on the commit LSN) and are acknowledged to
 *   Postgres only after Redis has them; a new leader continues from the
 *   slot's confirmed position and Redis skips what it has.
 * - Fan-out (redis-fanout.ts): per-key pub/sub channels, subscribed while a
 *   socket of the instance holds the key; the leader's sockets get their
 *   frames this way too.
 * - History (redis-history.ts): per-key streams bounded by rows and age,
 *   so a tab resumes from its cursor on any instance.
 */
import type pg from 'pg'
import { maxLsn, type Lsn } from '../../shared/lsn'
import type { ClusterHost, ClusterSubscription, ClusterTransaction, EngineCluster } from '../engine/engine-cluster'
import { LiveSyncError, type LiveSyncLogger } from '../engine/errors'
import { liveSyncLogger } from '../engine/logger'
import { KeyBatch, type Delivery, type Subscriber } from '../engine/key-batch'
import type { ReplayBufferOptions } from '../engine/replay-buffer'
import { SLOT_NAME_RE } from '../engine/permanent-slot'
import { LeaderElection } from './leader-election'
import { connectionOptions, describeRedis, loadRedis, type RedisConnection } from './redis-client'
import { RedisFanout } from './redis-fanout'
import { RedisHistory } from './redis-history'
import { redisLayout, type RedisLayout } from './redis-layout'
import { RedisPublisher } from './redis-publisher'

export interface RedisClusterOptions {
  /** `redis://[:password@]host:port[/db]` (or `rediss://`). */
  url: string
  /** The permanent replication slot the leader streams (default `live_sync`). */
  slotName?: string
  /** The Postgres connection: the election's lock is taken there, and its database names the Redis keys. */
  connection: pg.ClientConfig
  /** Bounds of the shared history (default 100 000 rows, 120 s). */
  replay?: ReplayBufferOptions
  logger?: LiveSyncLogger
}

/** The database a connection config names (part of the Redis keys, so apps sharing a Redis keep apart). */
function databaseName(config: pg.ClientConfig): string {
  if (config.database) return config.database
  if (config.connectionString) {
    try {
      const name = decodeURIComponent(new URL(config.connectionString).pathname.slice(1))
      if (name) return name
    }
    catch {
      // Not a URL (a key=value string): fall through.
    }
  }
  return process.env.PGDATABASE ?? config.user ?? process.env.PGUSER ?? 'postgres'
}

export class RedisCluster implements EngineCluster {
  readonly slotName: string
  private readonly layout: RedisLayout
  private readonly logger: LiveSyncLogger
  private host: ClusterHost | null = null
  private commands: RedisConnection | null = null
  private subscriber: RedisConnection | null = null
  private publisher: RedisPublisher | null = null
  private history: RedisHistory | null = null
  private readonly fanout: RedisFanout
  private election: LeaderElection | null = null
  private stopped = false
  private lastReported = ''
  private redisDown = false
  private lastRedisError: Error | null = null

  constructor(private readonly options: RedisClusterOptions) {
    this.slotName = options.slotName ?? 'live_sync'
    if (!SLOT_NAME_RE.test(this.slotName)) throw new LiveSyncError('CONFIG', `liveSync.slotName ${JSON.stringify(this.slotName)} is not a valid replication slot name: use lower-case letters, digits and _.`)
    this.layout = redisLayout(databaseName(options.connection), this.slotName)
    this.logger = options.logger ?? liveSyncLogger()
    // Made now, so that keys subscribed before Redis answers are subscribed when it does.
    this.fanout = new RedisFanout(this.layout, error => this.unreachable(error as Error), () => this.reachable(), () => this.unreachable(this.lastRedisError))
  }

  async start(host: ClusterHost): Promise<void> {
    this.host = host
    host.serve('starting', '')
    let Redis: Awaited<ReturnType<typeof loadRedis>>
    try {
      Redis = await loadRedis()
    }
    catch (error) {
      this.report(error)
      host.serve('error', '')
      return
    }
    if (this.stopped) return
    const commands = this.commands = new Redis(this.options.url, connectionOptions('live-sync'))
    const subscriber = this.subscriber = new Redis(this.options.url, connectionOptions('live-sync-fanout'))
    // ioredis reports each failed reconnect: remembered for the one message, which comes when the connection drops.
    for (const connection of [commands, subscriber]) connection.on('error', (error: Error) => (this.lastRedisError = error))
    this.publisher = new RedisPublisher(commands, this.layout, { maxRows: this.options.replay?.maxRows ?? 100_000, maxAgeMs: this.options.replay?.maxAgeMs ?? 120_000 })
    this.history = new RedisHistory(commands, this.layout)
    this.fanout.attach(subscriber, commands, host)
    this.election = new LeaderElection({
      config: this.options.connection,
      slotName: this.slotName,
      lead: () => host.lead(),
      lost: () => void host.follow(),
      report: error => this.report(new LiveSyncError('CONNECT', `the leader election (a Postgres advisory lock) failed: ${(error as Error)?.message ?? error}. Retrying.`, { cause: error })),
    })
    this.election.start()
    // Resolves once Redis answered or the first attempt failed (reported); ioredis keeps trying.
    await Promise.all([commands.connect(), subscriber.connect()]).catch(error => this.unreachable(error as Error))
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.fanout.stop()
    await this.election?.stop()
    await Promise.all([this.commands, this.subscriber].map(async (connection) => {
      if (!connection) return
      connection.removeAllListeners('close')
      await connection.quit().catch(() => connection.disconnect())
    }))
  }

  begin(point: Lsn, created: boolean): Promise<void> {
    return this.connected(this.publisher).begin(point, created)
  }

  publish(tx: ClusterTransaction): Promise<void> {
    return this.connected(this.publisher).publish(tx)
  }

  publishPosition(lsn: Lsn): Promise<void> {
    return this.connected(this.publisher).publishPosition(lsn)
  }

  async replay(key: string, since: Lsn): Promise<KeyBatch[] | null> {
    if (!this.fanout.live || !this.history) return null
    return this.history.since(key, since).catch(() => null)
  }

  /**
   * Joins the key's subscribers in the hub first (holding what arrives),
   * subscribes the instance to the key's channel, then reads the history:
   * every transaction is in one or the other, and one in both is delivered
   * once (by cursor).
   */
  async subscribe(key: string, subscriber: Subscriber, since: Lsn | null | undefined, burst: (deliver: () => void) => void): Promise<ClusterSubscription> {
    const host = this.host!
    const fanout = this.fanout
    let held: Delivery[] | null = []
    const from = host.cursor
    const leaveHub = host.hub.subscribe(key, (delivery) => {
      if (held) held.push(delivery)
      else subscriber(delivery)
    })
    let ended = false
    const unsubscribe = () => {
      if (ended) return
      ended = true
      leaveHub()
      fanout.release(key)
    }
    await fanout.retain(key)
    let batches: KeyBatch[] | null = []
    if (since) batches = await this.replay(key, since)
    let last: Lsn | null = since ?? null
    let replayed = 0
    if (batches?.length) {
      const replay = batches
      burst(() => {
        for (const batch of replay) {
          if (ended) return
          subscriber(batch)
          replayed++
          last = batch.cursor
        }
      })
    }
    return {
      unsubscribe,
      cursor: maxLsn(from, last),
      replayed,
      tooOld: batches === null,
      live: () => {
        const waiting = held ?? []
        held = null
        for (const delivery of waiting) {
          if (ended) return
          // Already replayed (it was in the history and arrived live as well).
          if (delivery instanceof KeyBatch && last && !delivery.after(last)) continue
          subscriber(delivery)
        }
      },
    }
  }

  private connected(publisher: RedisPublisher | null): RedisPublisher {
    if (!publisher) throw new LiveSyncError('REDIS', 'Redis is not connected (its client could not be loaded): live updates are off.')
    return publisher
  }

  private unreachable(error: Error | null): void {
    if (this.stopped || this.redisDown) return
    this.redisDown = true
    this.logger.error(`[live-sync] Redis at ${describeRedis(this.options.url)} is unreachable (${error?.message ?? 'connection closed'}): live updates pause on this instance until it is back, and its subscribers then resync if they may have missed anything. Pages are still served. Check liveSync.redis (NUXT_LIVE_SYNC_REDIS_URL).`)
  }

  private reachable(): void {
    if (!this.redisDown) return
    this.redisDown = false
    this.logger.info(`[live-sync] Redis at ${describeRedis(this.options.url)} is reachable again.`)
  }

  /** Logs an error once; the same one again stays quiet. */
  private report(error: unknown): void {
    const message = (error as Error)?.message ?? String(error)
    if (message === this.lastReported) return
    this.lastReported = message
    this.logger.error(message.startsWith('[live-sync]') ? message : `[live-sync] ${message}`)
  }
}

/** Cluster mode for `createLiveSyncEngine({ cluster })` (see `RedisClusterOptions`). */
export function createRedisCluster(options: RedisClusterOptions): RedisCluster {
  return new RedisCluster(options)
}
