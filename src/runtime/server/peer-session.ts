/**
 * One WebSocket peer's conversation: parses its frames, subscribes it to
 * keys on the engine and writes batches to it. Kept apart from the crossws
 * handler so that everything but the socket itself is plain code.
 *
 * Everything a client can make grow is bounded here: frames in (a token
 * bucket), frames waiting for an earlier frame's authorization, keys, and
 * bytes waiting to go out (checked before each live frame: one number
 * compare). Crossing a bound closes this socket only.
 */
import {
  CloseCode,
  keyString,
  parseClientMessage,
  PROTOCOL_VERSION,
  ProtocolError,
  type ClientMessage,
  type ErrorCode,
  type HelloMessage,
  type KeyValue,
  type Row,
  type ServerMessage,
  type SnapshotRequestMessage,
} from '../shared/protocol'
import { LiveSyncError } from './engine/errors'
import type { Congestion, Delivery } from './engine/key-batch'
import type { LiveSyncEngine } from './engine/live-sync-engine'
import { liveSyncLogger } from './engine/logger'
import { DEFAULT_LIMITS, type LiveSyncLimits } from './security-settings'
import { TokenBucket } from './token-bucket'

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
  /** Bounds (defaults: `DEFAULT_LIMITS`); `maxFrameBytes` is enforced by the socket itself. */
  limits?: Partial<LiveSyncLimits>
  /** Bytes written to the socket and not sent yet (`ws`'s `bufferedAmount`); without it unsent bytes are not bounded. */
  bufferedAmount?: () => number
  /** Closes the socket because a bound was crossed (the session already dropped its subscriptions, `keys`). */
  close?: (code: number, reason: string, keys: string[]) => void
  /** Told of each subscription the server refused (for counters, the DevTools tab and `debugKeys`). */
  refused?: (key: string, code: ErrorCode, reason: string) => void
  /** Clock of the frame rate limit, in ms. */
  now?: () => number
  snapshot?: SnapshotLimits
}

/** What one socket's snapshots may cost the server. */
export interface SnapshotLimits {
  /** Rows per query (default 500). */
  pageSize?: number
  /** Characters per `snapshot` frame, beyond which a page is split (default 256 KiB). */
  maxFrameChars?: number
  /** Snapshot requests a socket may have waiting; one runs at a time (default 8). */
  maxQueued?: number
  /**
   * Unsent bytes above which the next frame waits for the socket (default a
   * quarter of `limits.maxBufferedBytes`, so that live frames never find the
   * socket past its bound because of a snapshot).
   */
  maxBufferedBytes?: number
  /** How long a frame waits for the socket to drain before the snapshot fails (ms, default 30 000). */
  drainTimeoutMs?: number
}

/** The characters the frames of `batches` take (a lower bound of their UTF-8 bytes). */
function replayLength(batches: Array<{ frame: () => string }>): number {
  let length = 0
  for (const batch of batches) length += batch.frame().length
  return length
}

export class PeerSession {
  private readonly keys = new Map<string, () => void>()
  private readonly limits: LiveSyncLimits
  private readonly bucket: TokenBucket
  private readonly now: () => number
  private queue: Promise<void> = Promise.resolve()
  /** Frames received and not handled yet (waiting behind an authorization). */
  private waiting = 0
  /** Replayed batches go out in one burst, unchecked: the socket's backlog was checked before. */
  private replaying = false
  /** Snapshots run one at a time, apart from `queue`, so a long read does not hold up pings and subs. */
  private snapshots: Promise<void> = Promise.resolve()
  private queuedSnapshots = 0
  private closed = false

  constructor(private readonly options: PeerSessionOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits }
    this.now = options.now ?? Date.now
    this.bucket = new TokenBucket(this.limits.framesPerSecond, this.limits.frameBurst, this.now())
  }

  /** The first frame: protocol version, epoch and position; nothing about models or tables. */
  hello(): void {
    const engine = this.options.engine
    const hello: HelloMessage = {
      type: 'hello',
      v: PROTOCOL_VERSION,
      epoch: engine?.epoch ?? '',
      cursor: engine?.cursor ?? null,
    }
    this.write(hello)
  }

  /**
   * Handles one frame; frames of a peer are handled strictly in order. A
   * frame is parsed at once, so what waits behind an authorization is the
   * small parsed message, never the raw text.
   */
  receive(text: string): Promise<void> {
    if (this.closed) return this.queue
    if (!this.bucket.take(this.now())) {
      this.shut(CloseCode.POLICY_VIOLATION, 'too many frames')
      return this.queue
    }
    if (this.waiting >= this.limits.frameBurst) {
      this.shut(CloseCode.POLICY_VIOLATION, 'too many frames waiting for authorization')
      return this.queue
    }
    let message: ClientMessage | ProtocolError
    try {
      message = parseClientMessage(text)
    }
    catch (error) {
      message = error instanceof ProtocolError ? error : new ProtocolError('bad-request', (error as Error).message)
    }
    this.waiting++
    this.queue = this.queue.then(() => this.handle(message))
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

  get isClosed(): boolean {
    return this.closed
  }

  /** Closes the socket over a crossed bound; its subscriptions end at once, so nothing more is queued for it. */
  private shut(code: number, reason: string): void {
    if (this.closed) return
    const keys = [...this.keys.keys()]
    this.close()
    this.options.close?.(code, reason, keys)
  }

  /** More than `maxBufferedBytes` still waits to go out to this socket. */
  private backlogged(): boolean {
    const buffered = this.options.bufferedAmount
    return buffered !== undefined && buffered() > this.limits.maxBufferedBytes
  }

  private slowConsumer(): void {
    this.shut(CloseCode.SLOW_CONSUMER, 'slow consumer: reconnect and resume from your cursor')
  }

  private async handle(message: ClientMessage | ProtocolError): Promise<void> {
    try {
      await this.handleMessage(message)
    }
    catch {
      // Only writing to a socket that went away can throw here; nothing to tell anyone.
    }
    finally {
      this.waiting--
    }
  }

  private async handleMessage(message: ClientMessage | ProtocolError): Promise<void> {
    if (this.closed) return
    // Answers (a replay can be large) go only to a socket that keeps up.
    if (this.backlogged()) return this.slowConsumer()
    if (message instanceof ProtocolError) return this.error(message.code, message.message)
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
    // The subscription it was asked for ended (unsub, a new sub of the key, the socket): stop.
    const gone = () => this.closed || this.keys.get(key) !== subscription
    if (gone()) return this.error('bad-request', `[live-sync] the subscription of key ${JSON.stringify(key)} ended before its snapshot was read`, key, message.ref)
    try {
      const result = await engine.snapshot(message.key, message.models, (index, rows) => this.sendRows(key, message.ref, index, rows, gone), {
        settle: true,
        pageSize: this.options.snapshot?.pageSize,
        aborted: gone,
      })
      if (gone()) return this.error('bad-request', `[live-sync] the subscription of key ${JSON.stringify(key)} ended while its snapshot was read`, key, message.ref)
      this.write({ type: 'snapshotted', key, ref: message.ref, cursor: result.cursor, models: result.models })
    }
    catch (error) {
      if (error instanceof ProtocolError) return this.error(error.code, error.message, key, message.ref)
      liveSyncLogger().error(`[live-sync] snapshot of key ${JSON.stringify(key)} failed: ${(error as Error)?.stack ?? error}`)
      this.error('internal', '[live-sync] the server failed to read the snapshot (its log says why)', key, message.ref)
    }
  }

  /** Writes a page of rows as frames of bounded size, each once the socket has room for it. */
  private async sendRows(key: string, ref: number, index: number, rows: Row[], gone: () => boolean): Promise<void> {
    const maxChars = this.options.snapshot?.maxFrameChars ?? 256 * 1024
    const head = `{"type":"snapshot","key":${JSON.stringify(key)},"ref":${ref},"index":${index},"rows":[`
    let parts: string[] = []
    let length = 0
    const flush = async () => {
      await this.drained()
      if (!gone()) this.options.send(`${head}${parts.join(',')}]}`)
      parts = []
      length = 0
    }
    for (const row of rows) {
      const json = JSON.stringify(row)
      if (parts.length > 0 && length + json.length > maxChars) await flush()
      parts.push(json)
      length += json.length + 1
    }
    if (parts.length > 0) await flush()
  }

  /** Waits while the socket has more unsent than a snapshot may add to. */
  private async drained(): Promise<void> {
    const buffered = this.options.bufferedAmount
    if (!buffered) return
    const limit = this.options.snapshot?.maxBufferedBytes ?? Math.floor(this.limits.maxBufferedBytes / 4)
    const deadline = Date.now() + (this.options.snapshot?.drainTimeoutMs ?? 30_000)
    while (!this.closed && buffered() > limit) {
      if (Date.now() > deadline) throw new ProtocolError('unavailable', '[live-sync] the snapshot was abandoned: the socket did not take its rows in time')
      await new Promise(resolve => setTimeout(resolve, 10))
    }
  }

  private async subscribe(engine: LiveSyncEngine | null, value: KeyValue, since: string | undefined): Promise<void> {
    try {
      await this.trySubscribe(engine, value, since)
    }
    catch (error) {
      if (error instanceof ProtocolError) this.options.refused?.(keyString(value)!, error.code, error.message)
      throw error
    }
  }

  private async trySubscribe(engine: LiveSyncEngine | null, value: KeyValue, since: string | undefined): Promise<void> {
    const key = keyString(value)!
    if (!engine) throw new ProtocolError('unavailable', '[live-sync] live sync is not configured on this server')
    const maxKeys = this.limits.maxKeysPerSocket
    if (!this.keys.has(key) && this.keys.size >= maxKeys) {
      throw new ProtocolError('too-many-keys', `[live-sync] a socket may subscribe to at most ${maxKeys} keys`)
    }
    await this.authorize(value)
    if (this.closed) return
    // Subscribing again restarts the key (with the new cursor).
    this.keys.get(key)?.()
    this.keys.delete(key)
    // Synchronous in a single instance; in cluster mode the key's history is read from Redis first.
    const joined = engine.join(value, delivery => this.deliver(delivery), since, deliver => this.burst(deliver))
    const subscription = joined instanceof Promise ? await joined : joined
    if (this.closed) return subscription.unsubscribe()
    this.keys.set(key, subscription.unsubscribe)
    if (subscription.tooOld) {
      engine.metrics.resynced('too-old', 1)
      this.write({ type: 'resync', key, cursor: subscription.cursor, reason: 'too-old' })
    }
    // The id attributes travel only to an authorized subscriber.
    this.write({ type: 'subscribed', key, cursor: subscription.cursor, replayed: subscription.replayed, models: engine.models })
    subscription.live()
    // Subscribed all the same: when the stream (re)starts the key gets a `resync`.
    if (engine.status !== 'streaming') this.error('unavailable', '[live-sync] live updates are paused: the server\'s replication stream is not running (its log says why)', key)
  }

  private async replay(engine: LiveSyncEngine | null, value: KeyValue, since: string, ref: number): Promise<void> {
    const key = keyString(value)!
    if (!engine) throw new ProtocolError('unavailable', '[live-sync] live sync is not configured on this server')
    if (!this.keys.has(key)) throw new ProtocolError('bad-request', `[live-sync] replay of key ${JSON.stringify(key)}, which this socket has not subscribed to`)
    const found = engine.readHistory(value, since)
    const batches = found instanceof Promise ? await found : found
    if (this.closed) return
    // A replay's frames are this socket's own copies (they carry its `ref`): one larger than the
    // socket may hold unsent is answered like a history that does not reach back, with a reload.
    if (batches === null || replayLength(batches) > this.limits.maxBufferedBytes) {
      engine.metrics.resynced('too-old', 1)
      engine.explain(key, `replay since ${since} asked: ${batches === null ? 'older than the history' : 'more than maxBufferedBytes'}: resync too-old.`)
      return this.write({ type: 'resync', key, cursor: engine.cursor, reason: 'too-old', ref })
    }
    engine.explain(key, `replay since ${since} asked: ${batches.length} batch(es).`)
    for (const batch of batches) this.options.send(batch.replayFrame(ref))
    this.write({ type: 'replayed', key, ref, cursor: engine.cursor, replayed: batches.length })
  }

  private async authorize(key: KeyValue): Promise<void> {
    if (!this.options.authorize) return
    const timeoutMs = this.limits.authorizeTimeoutMs
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      await Promise.race([
        this.options.authorize(key),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within limits.authorizeTimeoutMs (${timeoutMs} ms)`)), timeoutMs)
        }),
      ])
    }
    catch (error) {
      const reason = (error as { statusMessage?: string, message?: string })?.statusMessage ?? (error as Error)?.message
      throw new ProtocolError('forbidden', `[live-sync] subscription to ${JSON.stringify(key)} refused${reason ? `: ${reason}` : ''}`)
    }
    finally {
      clearTimeout(timer)
    }
  }

  /** Replayed batches go out in one burst, unchecked: the socket's backlog was checked before. */
  private burst(deliver: () => void): void {
    this.replaying = true
    try {
      deliver()
    }
    finally {
      this.replaying = false
    }
  }

  private deliver(delivery: Delivery): Congestion | undefined {
    if (this.closed) return undefined
    if (!this.replaying && this.backlogged()) {
      this.slowConsumer()
      return undefined
    }
    if (this.options.sendBytes) this.options.sendBytes(delivery.frameBytes())
    else this.options.send(delivery.frame())
    // A large transaction's parts: past a quarter of the bound, the stream waits for this socket to drain.
    if (delivery.type === 'tx' && delivery.part && !this.replaying && this.congested()) return this.congestion
    return undefined
  }

  /** More than a quarter of `maxBufferedBytes` waits to go out. */
  private congested(): boolean {
    const buffered = this.options.bufferedAmount
    return buffered !== undefined && buffered() > this.limits.maxBufferedBytes / 4
  }

  /** What the engine polls while it waits for this socket (drained below an eighth of the bound, or closed). */
  private readonly congestion: Congestion = {
    drained: () => this.closed || (this.options.bufferedAmount?.() ?? 0) <= this.limits.maxBufferedBytes / 8,
    backlog: () => this.options.bufferedAmount?.() ?? 0,
    stall: () => this.slowConsumer(),
  }

  private error(code: ErrorCode, message: string, key?: string, ref?: number): void {
    this.write({ type: 'error', code, message, ...(key === undefined ? {} : { key }), ...(ref === undefined ? {} : { ref }) })
  }

  private write(message: ServerMessage): void {
    if (!this.closed) this.options.send(JSON.stringify(message))
  }
}
