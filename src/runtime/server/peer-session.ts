/**
 * One WebSocket peer's conversation: parses its frames, subscribes it to
 * keys on the engine and writes batches to it. Kept apart from the crossws
 * handler so that everything but the socket itself is plain code.
 */
import {
  keyString,
  parseClientMessage,
  PROTOCOL_VERSION,
  ProtocolError,
  type ClientMessage,
  type ErrorCode,
  type HelloMessage,
  type KeyValue,
  type ServerMessage,
  type SnapshotRequestMessage,
} from '../shared/protocol'
import { LiveSyncError } from './engine/errors'
import type { Delivery } from './engine/key-batch'
import type { LiveSyncEngine } from './engine/live-sync-engine'

/** Decides whether a peer may subscribe to a key; throws (or rejects) to refuse. */
export type Authorize = (key: KeyValue) => void | Promise<void>

export interface PeerSessionOptions {
  engine: LiveSyncEngine | null
  send: (frame: string) => void
  /**
   * Writes an already UTF-8 encoded frame as a text frame. When the socket
   * can, batches go out this way: encoded once per key, not once per socket.
   */
  sendBytes?: (frame: Buffer) => void
  authorize?: Authorize
  /** Most keys one socket may hold. */
  maxKeys?: number
  /** Bytes the socket has not sent yet: snapshot pages wait while it is above `snapshot.maxBufferedBytes`. */
  bufferedAmount?: () => number
  snapshot?: SnapshotLimits
}

/** What one socket's snapshots may cost the server. */
export interface SnapshotLimits {
  /** Rows per query and per `snapshot` frame (default 500). */
  pageSize?: number
  /** Snapshot requests a socket may have waiting; one runs at a time (default 8). */
  maxQueued?: number
  /** Unsent bytes above which the next page waits for the socket (default 1 MiB). */
  maxBufferedBytes?: number
  /** How long a page waits for the socket to drain before the snapshot fails (ms, default 30 000). */
  drainTimeoutMs?: number
}

export class PeerSession {
  private readonly keys = new Map<string, () => void>()
  private queue: Promise<void> = Promise.resolve()
  /** Snapshots run one at a time, apart from `queue`, so a long read does not hold up pings and subs. */
  private snapshots: Promise<void> = Promise.resolve()
  private queuedSnapshots = 0
  private closed = false

  constructor(private readonly options: PeerSessionOptions) {}

  /** The first frame: protocol version, epoch, position and model metadata. */
  hello(): void {
    const engine = this.options.engine
    const hello: HelloMessage = {
      type: 'hello',
      v: PROTOCOL_VERSION,
      epoch: engine?.epoch ?? '',
      cursor: engine?.cursor ?? null,
      models: engine?.models ?? {},
    }
    this.write(hello)
  }

  /** Handles one frame; frames of a peer are handled strictly in order. */
  receive(text: string): Promise<void> {
    this.queue = this.queue.then(() => this.handle(text))
    return this.queue
  }

  /** Drops every subscription of the peer. */
  close(): void {
    this.closed = true
    for (const unsubscribe of this.keys.values()) unsubscribe()
    this.keys.clear()
  }

  get keyCount(): number {
    return this.keys.size
  }

  private async handle(text: string): Promise<void> {
    if (this.closed) return
    let message: ClientMessage
    try {
      message = parseClientMessage(text)
    }
    catch (error) {
      const code = error instanceof ProtocolError ? error.code : 'bad-request'
      return this.error(code, (error as Error).message)
    }
    try {
      await this.dispatch(message)
    }
    catch (error) {
      const key = 'key' in message ? keyString(message.key)! : undefined
      // A failed replay or snapshot names its request, so the client can end what waits for it.
      const ref = message.type === 'replay' || message.type === 'snapshot' ? message.ref : undefined
      if (error instanceof ProtocolError) return this.error(error.code, error.message, key, ref)
      return this.error('internal', '[live-sync] the server failed to handle the message', key, ref)
    }
  }

  private async dispatch(message: ClientMessage): Promise<void> {
    const engine = this.options.engine
    switch (message.type) {
      case 'ping':
        return this.write({ type: 'pong', cursor: engine?.cursor ?? null, ...(message.t === undefined ? {} : { t: message.t }) })
      case 'unsub': {
        const key = keyString(message.key)!
        this.keys.get(key)?.()
        this.keys.delete(key)
        return this.write({ type: 'unsubscribed', key })
      }
      case 'sub':
        return this.subscribe(engine, message.key, message.since)
      case 'replay':
        return this.replay(engine, message.key, message.since, message.ref)
      case 'snapshot':
        return this.snapshot(engine, message)
    }
  }

  /**
   * Queues a snapshot of a key this socket subscribed to (so it is
   * authorized, exactly as for the key's changes). Answered with `snapshot`
   * pages and `snapshotted`, or an error carrying the request's `ref`.
   */
  private snapshot(engine: LiveSyncEngine | null, message: SnapshotRequestMessage): void {
    const key = keyString(message.key)!
    if (!engine) throw new ProtocolError('unavailable', '[live-sync] live sync is not configured on this server')
    const subscription = this.keys.get(key)
    if (!subscription) throw new ProtocolError('bad-request', `[live-sync] snapshot of key ${JSON.stringify(key)}, which this socket has not subscribed to; send sub first`)
    try {
      engine.resolveSnapshot(message.models)
    }
    catch (error) {
      if (error instanceof LiveSyncError) throw new ProtocolError('bad-request', error.message)
      throw error
    }
    const maxQueued = this.options.snapshot?.maxQueued ?? 8
    if (this.queuedSnapshots >= maxQueued) throw new ProtocolError('bad-request', `[live-sync] a socket may have at most ${maxQueued} snapshots waiting; wait for the answers`)
    this.queuedSnapshots++
    this.snapshots = this.snapshots
      .then(() => this.readSnapshot(engine, key, message, subscription))
      .finally(() => this.queuedSnapshots--)
  }

  private async readSnapshot(engine: LiveSyncEngine, key: string, message: SnapshotRequestMessage, subscription: () => void): Promise<void> {
    // The subscription it was asked for ended (unsub, or a new sub of the key): stop.
    const gone = () => this.closed || this.keys.get(key) !== subscription
    if (gone()) return this.error('bad-request', `[live-sync] the subscription of key ${JSON.stringify(key)} ended before its snapshot was read`, key, message.ref)
    try {
      const result = await engine.snapshot(message.key, message.models, async (index, rows) => {
        await this.drained()
        if (!gone()) this.write({ type: 'snapshot', key, ref: message.ref, index, rows })
      }, { settle: true, pageSize: this.options.snapshot?.pageSize, aborted: gone })
      if (gone()) return this.error('bad-request', `[live-sync] the subscription of key ${JSON.stringify(key)} ended while its snapshot was read`, key, message.ref)
      this.write({ type: 'snapshotted', key, ref: message.ref, cursor: result.cursor, models: result.models })
    }
    catch (error) {
      const code = error instanceof ProtocolError ? error.code : 'internal'
      this.error(code, error instanceof ProtocolError ? error.message : '[live-sync] the server failed to read the snapshot (its log says why)', key, message.ref)
      if (!(error instanceof ProtocolError)) console.error(`[live-sync] snapshot of key ${JSON.stringify(key)} failed: ${(error as Error)?.stack ?? error}`)
    }
  }

  /** Waits while the socket has more than the allowed bytes unsent. */
  private async drained(): Promise<void> {
    const buffered = this.options.bufferedAmount
    if (!buffered) return
    const limit = this.options.snapshot?.maxBufferedBytes ?? 1 << 20
    const deadline = Date.now() + (this.options.snapshot?.drainTimeoutMs ?? 30_000)
    while (!this.closed && buffered() > limit) {
      if (Date.now() > deadline) throw new ProtocolError('unavailable', '[live-sync] the snapshot was abandoned: the socket did not take its rows in time')
      await new Promise(resolve => setTimeout(resolve, 10))
    }
  }

  private async subscribe(engine: LiveSyncEngine | null, value: KeyValue, since: string | undefined): Promise<void> {
    const key = keyString(value)!
    if (!engine) throw new ProtocolError('unavailable', '[live-sync] live sync is not configured on this server')
    if (!this.keys.has(key) && this.keys.size >= (this.options.maxKeys ?? 1000)) {
      throw new ProtocolError('too-many-keys', `[live-sync] a socket may subscribe to at most ${this.options.maxKeys ?? 1000} keys`)
    }
    await this.authorize(value)
    if (this.closed) return
    // Subscribing again restarts the key (with the new cursor).
    this.keys.get(key)?.()
    const subscription = engine.subscribe(value, delivery => this.deliver(delivery), since)
    this.keys.set(key, subscription.unsubscribe)
    if (subscription.tooOld) this.write({ type: 'resync', key, cursor: subscription.cursor, reason: 'too-old' })
    this.write({ type: 'subscribed', key, cursor: subscription.cursor, replayed: subscription.replayed })
    // Subscribed all the same: when the stream (re)starts the key gets a `resync`.
    if (engine.status !== 'streaming') this.error('unavailable', '[live-sync] live updates are paused: the server\'s replication stream is not running (its log says why)', key)
  }

  private async replay(engine: LiveSyncEngine | null, value: KeyValue, since: string, ref: number): Promise<void> {
    const key = keyString(value)!
    if (!engine) throw new ProtocolError('unavailable', '[live-sync] live sync is not configured on this server')
    if (!this.keys.has(key)) throw new ProtocolError('bad-request', `[live-sync] replay of key ${JSON.stringify(key)}, which this socket has not subscribed to`)
    const batches = engine.replay(value, since)
    if (batches === null) return this.write({ type: 'resync', key, cursor: engine.cursor, reason: 'too-old', ref })
    for (const batch of batches) this.options.send(batch.replayFrame(ref))
    this.write({ type: 'replayed', key, ref, cursor: engine.cursor, replayed: batches.length })
  }

  private async authorize(key: KeyValue): Promise<void> {
    if (!this.options.authorize) return
    try {
      await this.options.authorize(key)
    }
    catch (error) {
      const reason = (error as { statusMessage?: string, message?: string })?.statusMessage ?? (error as Error)?.message
      throw new ProtocolError('forbidden', `[live-sync] subscription to ${JSON.stringify(key)} refused${reason ? `: ${reason}` : ''}`)
    }
  }

  private deliver(delivery: Delivery): void {
    if (this.closed) return
    if (this.options.sendBytes) this.options.sendBytes(delivery.frameBytes())
    else this.options.send(delivery.frame())
  }

  private error(code: ErrorCode, message: string, key?: string, ref?: number): void {
    this.write({ type: 'error', code, message, ...(key === undefined ? {} : { key }), ...(ref === undefined ? {} : { ref }) })
  }

  private write(message: ServerMessage): void {
    if (!this.closed) this.options.send(JSON.stringify(message))
  }
}
