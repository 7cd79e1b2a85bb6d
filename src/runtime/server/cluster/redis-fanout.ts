/**
 * Every instance's side of Redis: its hub is fed from per-key pub/sub
 * channels, subscribed only while a socket of this instance holds the key,
 * and from the positions channel (the cursor, epoch changes, resyncs).
 * Frames arrive as the leader serialized them and go to the sockets as
 * they are: one encoding per batch for all sockets, as in a single instance.
 *
 * Pub/sub loses nothing while its connection lives; when it drops, this
 * instance resubscribes, then compares the history's epoch and position
 * with those it had: if either moved, its subscribers may have missed
 * changes and get `resync`.
 */
import { compareLsn, numberToLsn, type Lsn } from '../../shared/lsn'
import type { ClusterHost } from '../engine/engine-cluster'
import { KeyBatch } from '../engine/key-batch'
import type { RedisConnection } from './redis-client'
import { decodeFrameMessage, keyChannel, type PositionMessage, type RedisLayout } from './redis-layout'

interface Channel {
  /** Subscriptions of this instance to the key. */
  count: number
  /** Settles once Redis confirmed the subscription (or the connection failed). */
  subscribed: Promise<void>
}

export class RedisFanout {
  /** Redis reachable and caught up: what arrives is complete. */
  live = false
  private epoch = ''
  /** The position when the connection dropped. */
  private lastSeen: Lsn | null = null
  private wasLive = false
  private readonly channels = new Map<string, Channel>()
  private readonly positions: Buffer
  private readonly keyPrefixLength: number
  /** Counts connections, so a catch-up of an older one is dropped. */
  private generation = 0
  private stopped = false
  private subscriber: RedisConnection | null = null
  private commands: RedisConnection | null = null
  private host!: ClusterHost

  constructor(
    private readonly layout: RedisLayout,
    private readonly report: (error: unknown) => void,
    /** Redis answers again (after `down`, or for the first time). */
    private readonly up: () => void,
    /** The connection dropped. */
    private readonly down: () => void,
  ) {
    this.positions = Buffer.from(layout.positions)
    this.keyPrefixLength = Buffer.byteLength(layout.keys)
  }

  /**
   * Takes the connections (once the Redis client is loaded): keys retained
   * before are subscribed when the subscriber connection is ready.
   */
  attach(subscriber: RedisConnection, commands: RedisConnection, host: ClusterHost): void {
    this.host = host
    this.subscriber = subscriber
    this.commands = commands
    subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onMessage(channel, message))
    subscriber.on('ready', () => void this.catchUp())
    subscriber.on('close', () => this.dropped())
    // Catching up reads the history's state on the command connection.
    commands.on('ready', () => {
      if (!this.live && subscriber.status === 'ready') void this.catchUp()
    })
  }

  /** Subscribes this instance to a key's channel (counted); resolves once Redis confirmed it. */
  retain(key: string): Promise<void> {
    const channel = this.channels.get(key)
    if (channel) {
      channel.count++
      return channel.subscribed
    }
    // Not connected: the subscription is made when the connection is (back) up.
    const subscribed = this.subscriber?.status === 'ready' ? this.subscriber.subscribe(keyChannel(this.layout, key)).then(() => {}, () => {}) : Promise.resolve()
    this.channels.set(key, { count: 1, subscribed })
    return subscribed
  }

  /** Drops one subscription of a key; the last one unsubscribes from its channel. */
  release(key: string): void {
    const channel = this.channels.get(key)
    if (!channel || --channel.count > 0) return
    this.channels.delete(key)
    if (this.subscriber?.status === 'ready') this.subscriber.unsubscribe(keyChannel(this.layout, key)).catch(() => {})
  }

  stop(): void {
    this.stopped = true
    this.live = false
  }

  /** Subscribes again to everything (a new connection has none), then checks what may have been missed. */
  private async catchUp(): Promise<void> {
    const { subscriber, commands } = this
    if (this.stopped || !subscriber || !commands || subscriber.status !== 'ready') return
    const generation = ++this.generation
    try {
      await subscriber.subscribe(this.layout.positions, ...[...this.channels.keys()].map(key => keyChannel(this.layout, key)))
      if (commands.status !== 'ready') return // its 'ready' calls again
      const [epoch, position] = await commands.hmget(this.layout.meta, 'epoch', 'pos')
      if (generation !== this.generation || this.stopped || subscriber.status !== 'ready') return
      const cursor = position ? numberToLsn(Number(position)) : null
      // Nothing was missed only if this instance was live before and the history neither restarted nor moved.
      const unchanged = this.wasLive && (epoch ?? '') === this.epoch && sameLsn(cursor, this.lastSeen)
      this.epoch = epoch ?? ''
      if (cursor) this.advance(cursor)
      this.live = true
      this.wasLive = true
      this.up()
      if (!unchanged && this.host.hub.keyCount > 0) this.host.resyncAll('gap', this.host.cursor)
      this.serve()
    }
    catch (error) {
      // The connection failed meanwhile: its next 'ready' tries again.
      if (generation === this.generation) this.report(error)
    }
  }

  private dropped(): void {
    this.generation++
    if (this.stopped) return
    if (this.live) {
      this.live = false
      this.lastSeen = this.host.cursor
      this.down()
    }
    this.host.serve('reconnecting', this.epoch)
  }

  /** 'streaming' once there is a history (a leader has begun one) and Redis is reachable. */
  private serve(): void {
    this.host.serve(this.live ? (this.epoch ? 'streaming' : 'starting') : 'reconnecting', this.epoch)
  }

  private advance(cursor: Lsn): void {
    const current = this.host.cursor
    if (!current || compareLsn(cursor, current) > 0) this.host.advance(cursor)
  }

  private onMessage(channel: Buffer, message: Buffer): void {
    try {
      if (channel.length === this.positions.length && channel.equals(this.positions)) return this.onPosition(JSON.parse(message.toString('utf8')) as PositionMessage)
      const key = channel.toString('utf8', this.keyPrefixLength)
      const frame = decodeFrameMessage(message)
      this.host.hub.deliverBatch(KeyBatch.fromFrame(key, frame.cursor, frame.changes, frame.frame, Date.now()))
    }
    catch (error) {
      // A message this version cannot read: its subscribers cannot know what they missed.
      this.report(error)
      if (this.host.hub.keyCount > 0) this.host.resyncAll('gap', this.host.cursor)
    }
  }

  private onPosition(position: PositionMessage): void {
    const renewed = position.e !== this.epoch
    if (renewed) {
      // A new history: the first one, or Redis lost the last. What subscribers hold may be stale.
      this.epoch = position.e
      this.serve()
    }
    this.advance(position.c)
    if (position.r === 'truncate') this.host.resyncAll('truncate', position.c, position.t)
    else if (this.host.hub.keyCount === 0) return
    else if (renewed) this.host.resyncAll('gap', position.c)
    else if (position.r === 'gap') this.host.resyncAll('gap', position.c, undefined, position.k)
  }
}

function sameLsn(a: Lsn | null, b: Lsn | null): boolean {
  return a === b || (!!a && !!b && compareLsn(a, b) === 0)
}
