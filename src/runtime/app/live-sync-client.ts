/**
 * The browser side of the connection: one WebSocket per tab however many
 * components subscribe, ref-counted subscriptions per key, reconnect with
 * exponential backoff and jitter, a heartbeat that notices a dead socket,
 * and resume from each key's cursor after a reconnect. Framework-free (the
 * Vue binding lives in bind-live-sync.ts) so it can be tested with a fake socket.
 */
import { compareLsn, maxLsn, type Lsn } from '../shared/lsn'
import {
  CloseCode,
  keyString,
  PROTOCOL_VERSION,
  type ClientMessage,
  type ErrorMessage,
  type KeyValue,
  type ModelMeta,
  type ResyncMessage,
  type Row,
  type ServerMessage,
  type SnapshotModel,
  type TxMessage,
  type Change,
} from '../shared/protocol'
import type { LiveSyncInspector } from './live-sync-inspector'

export type LiveSyncStatus = 'idle' | 'connecting' | 'live' | 'reconnecting' | 'error'

/** What one subscriber (one `useLiveSync` call) is told, in order. */
export interface KeyListener {
  /** A committed transaction's changes for the key (live or replayed). */
  batch: (message: TxMessage) => void
  /** What the subscriber holds may be stale: reload it. */
  resync: (message: ResyncMessage) => void
  /** The subscription's status changed. */
  status?: (status: LiveSyncStatus, error: Error | null) => void
  /** What the subscriber watches (names and models), for the DevTools tab. */
  watch?: ReadonlyArray<{ name: string, model: string }>
}

/** One key this tab subscribes to, as the DevTools tab shows it (`LiveSyncClient.inspect()`). */
export interface InspectedSubscription {
  key: string
  /** pending: not sent on this socket yet; sent: waiting for `subscribed`; live; failed: refused. */
  phase: 'pending' | 'sent' | 'live' | 'failed'
  /** The key's data is known up to here. */
  cursor: Lsn | null
  error: string | null
  subscribers: Array<{ status: LiveSyncStatus, error: string | null, since: Lsn | null, watch: ReadonlyArray<{ name: string, model: string }> }>
}

/** The part of the browser WebSocket the client uses. */
export interface SocketLike {
  readonly readyState: number
  send: (data: string) => void
  close: (code?: number, reason?: string) => void
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: unknown) => void) | null
  onerror: ((event: unknown) => void) | null
}

export interface LiveSyncClientOptions {
  /** ws:// or wss:// URL of the route; `?v=<protocol>` is added. */
  url: string
  createSocket?: (url: string) => SocketLike
  /** A ping is sent this often while connected (ms). */
  heartbeatIntervalMs?: number
  /** No answer to a ping within this long closes the socket (ms). */
  heartbeatTimeoutMs?: number
  reconnect?: { minDelayMs?: number, maxDelayMs?: number }
  /** The server position known before any socket (from the server-rendered page). */
  initialCursor?: Lsn | null
  random?: () => number
  onWarning?: (message: string) => void
  /** Records frames and closes for the DevTools tab (development only). */
  inspector?: LiveSyncInspector
}

interface Entry {
  listener: KeyListener
  /** The cursor the subscriber's data is at least as new as. */
  since: Lsn | null
  /**
   * Waiting for a replay of its own (`ref` null: not asked for yet): live
   * frames (batches and resyncs) wait in `buffer` meanwhile, in order.
   */
  catchUp: { ref: number | null, buffer: Array<TxMessage | ResyncMessage> } | null
  /** Its replay failed. */
  error: Error | null
  /** Has been live: while it is not, it is reconnecting rather than connecting. */
  wasLive: boolean
  /** The status last reported, so that only changes are reported. */
  reported: { status: LiveSyncStatus, error: Error | null } | null
}

interface KeyState {
  key: string
  value: KeyValue
  entries: Set<Entry>
  /**
   * pending: not sent on this socket yet; sent: awaiting `subscribed`;
   * failed: the server refused the `sub` (an error frame), until the next socket.
   */
  phase: 'pending' | 'sent' | 'live' | 'failed'
  /** The key's state is known up to here. */
  cursor: Lsn | null
  /** The `since` the current `sub` was sent with. */
  sentSince: Lsn | null
  /**
   * Frames (the sub's replay) that arrived before `subscribed`: held until
   * it confirms the subscription and brings the models' id attributes.
   */
  held: Array<TxMessage | ResyncMessage> | null
  error: Error | null
}

/** The rows of a key a snapshot read, and where the key's changes take over. */
export interface SnapshotResult {
  /** Every transaction up to here is in `rows`; later ones arrive as batches. */
  cursor: Lsn | null
  /** Rows per requested model, in the request's order. */
  rows: Row[][]
}

interface SnapshotRequest {
  ref: number
  state: KeyState
  models: SnapshotModel[]
  rows: Row[][]
  /** Sent on the current socket (after the key's `sub`). */
  sent: boolean
  resolve: (result: SnapshotResult) => void
  reject: (error: Error) => void
}

const OPEN = 1
/** A socket closed as a slow consumer this soon after its hello counts as another slow close in a row (ms). */
const SLOW_STREAK_MS = 60_000

export class LiveSyncClient {
  /** The newest server position heard of. */
  knownCursor: Lsn | null
  /** Set while a page navigation is under way: data loaded for the new page is at least this new. */
  navigationCursor: Lsn | null = null
  /** The watched models' id attributes, as the server's `subscribed` frames give them. */
  models: Record<string, ModelMeta> = {}
  epoch = ''
  socketStatus: 'idle' | 'connecting' | 'open' | 'reconnecting' = 'idle'
  private readonly keys = new Map<string, KeyState>()
  private readonly replays = new Map<number, { state: KeyState, entry: Entry }>()
  private readonly snapshots = new Map<number, SnapshotRequest>()
  /**
   * Keys with an `unsub` sent on this socket and no `unsubscribed` yet: frames
   * about them until then belong to the old subscription, even when the key
   * was subscribed again meanwhile.
   */
  private readonly leaving = new Map<string, number>()
  /**
   * Transactions arriving in parts, by key (live frames) or by `r<ref>` (a
   * replay's frames): their changes so far and the next part expected.
   */
  private readonly assembling = new Map<string, { next: number, changes: Change[] }>()
  private socket: SocketLike | null = null
  private nextRef = 1
  private attempt = 0
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null
  private heartbeatDeadline: ReturnType<typeof setTimeout> | null = null
  private fatal: Error | null = null
  /** When the current socket got its hello. */
  private openedAt = 0
  /** Slow-consumer closes in a row: they back off like failed connections. */
  private slowCloses = 0
  private readonly options: Required<Omit<LiveSyncClientOptions, 'initialCursor' | 'reconnect' | 'inspector'>> & { reconnect: { minDelayMs: number, maxDelayMs: number } }
  /** What the DevTools tab reads (development only). */
  readonly inspector: LiveSyncInspector | undefined

  constructor(options: LiveSyncClientOptions) {
    this.options = {
      url: options.url,
      createSocket: options.createSocket ?? (url => new WebSocket(url) as unknown as SocketLike),
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 25_000,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 10_000,
      reconnect: { minDelayMs: options.reconnect?.minDelayMs ?? 500, maxDelayMs: options.reconnect?.maxDelayMs ?? 15_000 },
      random: options.random ?? Math.random,
      onWarning: options.onWarning ?? (message => console.warn(message)),
    }
    this.knownCursor = options.initialCursor ?? null
    this.inspector = options.inspector
  }

  /**
   * Subscribes `listener` to `value`. The first subscriber of a key makes
   * the server subscription; later ones share it and get a replay from
   * their own `since` first. Returns the unsubscribe function.
   */
  subscribe(value: KeyValue, listener: KeyListener, since: Lsn | null = null): () => void {
    const key = keyString(value)!
    let state = this.keys.get(key)
    if (!state) {
      state = { key, value, entries: new Set(), phase: 'pending', cursor: null, sentSince: null, held: null, error: null }
      this.keys.set(key, state)
    }
    const entry: Entry = { listener, since, catchUp: null, error: null, wasLive: false, reported: null }
    state.entries.add(entry)
    if (since && state.phase === 'live') {
      if (state.cursor && compareLsn(since, state.cursor) < 0) this.requestReplay(state, entry)
    }
    else if (since && state.phase === 'sent') {
      // The sub's own replay may have delivered frames past `sentSince` already.
      const from = maxLsn(state.cursor, state.sentSince)
      if (!from || compareLsn(since, from) < 0) entry.catchUp = { ref: null, buffer: [] } // asked for once `subscribed` arrives
    }
    else if (since && state.phase === 'pending' && state.cursor && compareLsn(since, state.cursor) < 0) {
      // A resumed key subscribes from its cursor, which is newer than this
      // subscriber's data: it needs a replay of its own too.
      entry.catchUp = { ref: null, buffer: [] }
    }
    this.ensureSocket()
    this.flushPending()
    this.updateStatuses()
    return () => this.unsubscribe(state, entry)
  }

  /** Remembers the id attributes of models (from the server's frames, or a server render's snapshot). */
  learnModels(models: Record<string, ModelMeta> | undefined): void {
    if (models) this.models = { ...this.models, ...models }
  }

  /**
   * Asks the server for the current rows of a key this client subscribes
   * to (a listener of it must be registered). Sent after the key's `sub`, and
   * again on the next socket if this one drops first. Rejects when the
   * server refuses or the key is unsubscribed before the answer.
   */
  snapshot(value: KeyValue, models: SnapshotModel[]): Promise<SnapshotResult> {
    const state = this.keys.get(keyString(value)!)
    if (!state) return Promise.reject(new Error(`[live-sync] snapshot of key ${JSON.stringify(keyString(value))}, which is not subscribed`))
    if (state.phase === 'failed') return Promise.reject(state.error ?? new Error(`[live-sync] the subscription of key ${JSON.stringify(state.key)} failed`))
    return new Promise((resolve, reject) => {
      const request: SnapshotRequest = { ref: this.nextRef++, state, models, rows: models.map(() => []), sent: false, resolve, reject }
      this.snapshots.set(request.ref, request)
      if (this.socketStatus === 'open' && (state.phase === 'sent' || state.phase === 'live')) this.sendSnapshot(request)
    })
  }

  private sendSnapshot(request: SnapshotRequest): void {
    request.sent = true
    request.rows = request.models.map(() => [])
    this.send({ type: 'snapshot', key: request.state.value, models: request.models, ref: request.ref })
  }

  /** Ends a snapshot request with an error. */
  private failSnapshot(request: SnapshotRequest, error: Error): void {
    this.snapshots.delete(request.ref)
    request.reject(error)
  }

  /** Closes the socket for good (tests, app teardown). */
  close(): void {
    this.fatal = this.fatal ?? new Error('[live-sync] client closed')
    this.clearTimers()
    this.socket?.close(1000, 'client closed')
    this.socket = null
    this.socketStatus = 'idle'
    for (const request of [...this.snapshots.values()]) this.failSnapshot(request, this.fatal)
    // Subscribers would otherwise stay 'live' on a closed socket.
    this.updateStatuses()
  }

  /** Number of keys with a server subscription (for tests and devtools). */
  get keyCount(): number {
    return this.keys.size
  }

  /** This tab's subscriptions: key, phase, cursor, and each subscriber's status and watched models (for the DevTools tab). */
  inspect(): InspectedSubscription[] {
    return [...this.keys.values()].map(state => ({
      key: state.key,
      phase: state.phase,
      cursor: state.cursor,
      error: state.error?.message ?? null,
      subscribers: [...state.entries].map(entry => ({
        status: entry.reported?.status ?? 'connecting',
        error: entry.reported?.error?.message ?? null,
        since: entry.since,
        watch: entry.listener.watch ?? [],
      })),
    }))
  }

  private unsubscribe(state: KeyState, entry: Entry): void {
    if (!state.entries.delete(entry)) return
    if (entry.catchUp?.ref) this.replays.delete(entry.catchUp.ref)
    if (state.entries.size > 0 || this.keys.get(state.key) !== state) return
    this.keys.delete(state.key)
    this.assembling.delete(`k${state.key}`)
    for (const request of [...this.snapshots.values()]) {
      if (request.state === state) this.failSnapshot(request, new Error(`[live-sync] key ${JSON.stringify(state.key)} was unsubscribed before its snapshot arrived`))
    }
    if (state.phase !== 'pending' && this.socket?.readyState === OPEN) {
      this.send({ type: 'unsub', key: state.value })
      this.leaving.set(state.key, (this.leaving.get(state.key) ?? 0) + 1)
    }
  }

  // ── socket lifecycle ──────────────────────────────────────────────────────

  private ensureSocket(): void {
    if (this.socket || this.reconnectTimer || this.fatal) return
    this.connect()
  }

  private connect(): void {
    this.socketStatus = this.attempt === 0 ? 'connecting' : 'reconnecting'
    const separator = this.options.url.includes('?') ? '&' : '?'
    let socket: SocketLike
    try {
      socket = this.options.createSocket(`${this.options.url}${separator}v=${PROTOCOL_VERSION}`)
    }
    catch (error) {
      this.options.onWarning(`[live-sync] could not open the WebSocket: ${(error as Error).message}`)
      this.scheduleReconnect()
      return
    }
    this.socket = socket
    socket.onmessage = event => this.onMessage(socket, event.data)
    socket.onclose = (event) => {
      const { code, reason } = (event ?? {}) as { code?: number, reason?: string }
      if (this.socket === socket) this.inspector?.closed(code, reason)
      this.onClose(socket, code)
    }
    socket.onerror = () => {} // a close event follows
    this.updateStatuses()
  }

  private onClose(socket: SocketLike, code?: number): void {
    if (this.socket !== socket) return
    this.socket = null
    this.clearTimers()
    if (code === CloseCode.SLOW_CONSUMER) {
      // The tab did not read fast enough: resume from the cursors, backing off if it keeps happening.
      this.slowCloses = Date.now() - this.openedAt < SLOW_STREAK_MS ? this.slowCloses + 1 : 1
      this.attempt = this.slowCloses - 1
      this.options.onWarning('[live-sync] the server closed the connection because this tab did not keep up with its updates; reconnecting and resuming from the last cursor.')
    }
    for (const state of this.keys.values()) {
      // Held frames were never handed out: the key's cursor does not include them, so they are replayed.
      state.held = null
      // Resume from the oldest point any subscriber still needs.
      // (A subscriber whose replay failed gets another chance this way.)
      for (const entry of state.entries) {
        if (entry.catchUp || entry.error) {
          state.cursor = minCursor(state.cursor, entry.since)
          entry.catchUp = null
          entry.error = null
        }
      }
      state.phase = 'pending'
    }
    this.replays.clear()
    this.leaving.clear()
    // Half-received transactions are replayed whole from the cursors.
    this.assembling.clear()
    // Asked again after the key's `sub` on the next socket.
    for (const request of this.snapshots.values()) request.sent = false
    if (this.fatal) return this.updateStatuses()
    this.scheduleReconnect()
  }

  private scheduleReconnect(): void {
    const { minDelayMs, maxDelayMs } = this.options.reconnect
    const delay = Math.min(maxDelayMs, minDelayMs * 2 ** this.attempt) * (0.5 + this.options.random() / 2)
    this.attempt++
    this.socketStatus = 'reconnecting'
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null
      if (this.keys.size > 0) this.connect()
      else this.socketStatus = 'idle'
    }, delay)
    this.updateStatuses()
  }

  private clearTimers(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer)
    if (this.heartbeatDeadline) clearTimeout(this.heartbeatDeadline)
    if (this.reconnectTimer && this.fatal) clearTimeout(this.reconnectTimer)
    this.heartbeatTimer = null
    this.heartbeatDeadline = null
  }

  private startHeartbeat(socket: SocketLike): void {
    this.heartbeatTimer = setInterval(() => {
      if (this.heartbeatDeadline) return
      this.send({ type: 'ping', t: Date.now() })
      this.heartbeatDeadline = setTimeout(() => {
        // No answer: the connection is dead even if the socket does not know yet.
        this.heartbeatDeadline = null
        socket.close(CloseCode.HEARTBEAT_TIMEOUT, 'heartbeat timeout')
        this.onClose(socket)
      }, this.options.heartbeatTimeoutMs)
    }, this.options.heartbeatIntervalMs)
  }

  private send(message: ClientMessage): void {
    if (this.socket?.readyState === OPEN) this.socket.send(JSON.stringify(message))
  }

  /** Sends `sub` for every key not yet subscribed on this socket. */
  private flushPending(): void {
    if (this.socketStatus !== 'open') return
    for (const state of this.keys.values()) {
      if (state.phase !== 'pending') continue
      const since = this.subscribeSince(state)
      state.phase = 'sent'
      state.sentSince = since
      this.send(since ? { type: 'sub', key: state.value, since } : { type: 'sub', key: state.value })
    }
    // The server handles a socket's frames in order: a snapshot after its key's `sub` is authorized.
    for (const request of this.snapshots.values()) {
      if (!request.sent && (request.state.phase === 'sent' || request.state.phase === 'live')) this.sendSnapshot(request)
    }
  }

  /** A resumed key continues from its cursor; a new one from its oldest subscriber's `since`. */
  private subscribeSince(state: KeyState): Lsn | null {
    if (state.cursor) return state.cursor
    let since: Lsn | null = null
    for (const entry of state.entries) since = minCursor(since, entry.since)
    return since
  }

  private requestReplay(state: KeyState, entry: Entry): void {
    const ref = this.nextRef++
    entry.catchUp = { ref, buffer: entry.catchUp?.buffer ?? [] }
    this.replays.set(ref, { state, entry })
    this.send({ type: 'replay', key: state.value, since: entry.since!, ref })
  }

  /** Ends an entry's catch-up: hands it its buffered live frames (except those `skip` says the replay covered). */
  private endCatchUp(entry: Entry, skip: (frame: TxMessage | ResyncMessage) => boolean): void {
    const buffered = entry.catchUp?.buffer ?? []
    entry.catchUp = null
    for (const frame of buffered) {
      if (skip(frame)) continue
      if (frame.type === 'tx') entry.listener.batch(frame)
      else entry.listener.resync(frame)
    }
  }

  /** Whether a key frame (not answering a replay) is about a subscription this socket has left. */
  private isLeft(key: string): boolean {
    return (this.leaving.get(key) ?? 0) > 0
  }

  // ── messages ──────────────────────────────────────────────────────────────

  private onMessage(socket: SocketLike, data: unknown): void {
    if (this.socket !== socket || typeof data !== 'string') return
    if (this.heartbeatDeadline) {
      // Anything from the server proves the connection alive.
      clearTimeout(this.heartbeatDeadline)
      this.heartbeatDeadline = null
    }
    let message: ServerMessage
    try {
      message = JSON.parse(data) as ServerMessage
    }
    catch {
      this.options.onWarning('[live-sync] ignored a frame that is not JSON')
      return
    }
    this.inspector?.frame(message, data.length)
    switch (message.type) {
      case 'hello':
        return this.onHello(socket, message)
      case 'tx':
        return this.onTx(message)
      case 'subscribed': {
        this.learnModels(message.models)
        const state = this.keys.get(message.key)
        if (!state || state.phase !== 'sent' || this.isLeft(message.key)) return
        state.phase = 'live'
        const held = state.held
        state.held = null
        // The sub's replay, now that the models' id attributes are known.
        for (const frame of held ?? []) {
          if (frame.type === 'tx') this.onTx(frame)
          else this.onResync(frame)
        }
        state.error = null
        state.cursor = maxLsn(state.cursor, message.cursor)
        this.knownCursor = maxLsn(this.knownCursor, message.cursor)
        for (const entry of state.entries) {
          if (entry.catchUp && entry.catchUp.ref === null) this.requestReplay(state, entry)
        }
        return this.updateStatuses()
      }
      case 'replayed': {
        const replay = this.replays.get(message.ref)
        this.assembling.delete(`r${message.ref}`)
        if (!replay) return
        this.replays.delete(message.ref)
        this.knownCursor = maxLsn(this.knownCursor, message.cursor)
        // Batches up to the replay's cursor were part of the replay. Resyncs
        // always pass: the replay history does not record truncations.
        const cursor = message.cursor
        this.endCatchUp(replay.entry, frame => frame.type === 'tx' && !!cursor && compareLsn(frame.cursor, cursor) <= 0)
        return this.updateStatuses()
      }
      case 'resync':
        return this.onResync(message)
      case 'snapshot': {
        const request = this.snapshots.get(message.ref)
        const rows = request?.rows[message.index]
        if (rows) for (const row of message.rows) rows.push(row)
        return
      }
      case 'snapshotted': {
        const request = this.snapshots.get(message.ref)
        if (!request) return
        this.snapshots.delete(message.ref)
        this.learnModels(message.models)
        this.knownCursor = maxLsn(this.knownCursor, message.cursor)
        request.resolve({ cursor: message.cursor, rows: request.rows })
        return
      }
      case 'pong':
        this.knownCursor = maxLsn(this.knownCursor, message.cursor)
        // Frames arrive in order: every batch of a live key up to here has arrived.
        for (const state of this.keys.values()) {
          if (state.phase === 'live') state.cursor = maxLsn(state.cursor, message.cursor)
        }
        return
      case 'error':
        return this.onError(socket, message)
      case 'unsubscribed': {
        const count = this.leaving.get(message.key) ?? 0
        if (count > 1) this.leaving.set(message.key, count - 1)
        else this.leaving.delete(message.key)
        return
      }
    }
  }

  private onHello(socket: SocketLike, message: ServerMessage & { type: 'hello' }): void {
    if (message.v !== PROTOCOL_VERSION) {
      this.fatal = new Error(`[live-sync] the server speaks protocol ${message.v}, this page ${PROTOCOL_VERSION}: reload the page.`)
      socket.close(1002, 'protocol version')
      this.socket = null
      this.clearTimers()
      return this.updateStatuses()
    }
    this.attempt = 0
    this.openedAt = Date.now()
    this.epoch = message.epoch
    this.knownCursor = maxLsn(this.knownCursor, message.cursor)
    this.socketStatus = 'open'
    this.startHeartbeat(socket)
    this.flushPending()
    this.updateStatuses()
  }

  /**
   * Collects the parts of a transaction sent in parts; at its last part
   * returns it whole (as one `tx`), before that null. Parts of a transaction
   * whose first part this socket did not get (it subscribed meanwhile, without
   * a cursor that reaches back) are dropped: never half a transaction.
   */
  private assemble(message: TxMessage): TxMessage | null {
    const id = message.ref === undefined ? `k${message.key}` : `r${message.ref}`
    let tx = this.assembling.get(id)
    if (message.part === 0) this.assembling.set(id, (tx = { next: 0, changes: [] }))
    if (!tx || message.part !== tx.next) {
      this.assembling.delete(id)
      return null
    }
    tx.next++
    for (const change of message.changes) tx.changes.push(change)
    if (!message.last) return null
    this.assembling.delete(id)
    const whole: TxMessage = { type: 'tx', key: message.key, cursor: message.cursor, changes: tx.changes }
    if (message.ref !== undefined) whole.ref = message.ref
    return whole
  }

  private onTx(frame: TxMessage): void {
    const message = frame.part === undefined ? frame : this.assemble(frame)
    if (!message) return
    this.knownCursor = maxLsn(this.knownCursor, message.cursor)
    if (message.ref !== undefined) {
      this.replays.get(message.ref)?.entry.listener.batch(message)
      return
    }
    const state = this.keys.get(message.key)
    if (!state || this.isLeft(message.key)) return
    if (state.phase === 'sent') {
      (state.held ??= []).push(message)
      return
    }
    state.cursor = maxLsn(state.cursor, message.cursor)
    for (const entry of state.entries) {
      if (entry.catchUp) entry.catchUp.buffer.push(message)
      else entry.listener.batch(message)
    }
  }

  private onResync(message: ResyncMessage): void {
    // A transaction whose parts were arriving will not be completed.
    this.assembling.delete(message.ref === undefined ? `k${message.key}` : `r${message.ref}`)
    const state = this.keys.get(message.key)
    if (!state) return
    if (message.ref !== undefined) {
      const replay = this.replays.get(message.ref)
      if (!replay) return
      this.replays.delete(message.ref)
      replay.entry.listener.resync(message)
      // The reload covers the resyncs buffered meanwhile; the batches are replayed on top of it.
      this.endCatchUp(replay.entry, frame => frame.type === 'resync')
      return this.updateStatuses()
    }
    if (this.isLeft(message.key)) return
    if (state.phase === 'sent') {
      (state.held ??= []).push(message)
      return
    }
    state.cursor = maxLsn(state.cursor, message.cursor)
    // The server's stream (re)started: live updates that were paused flow again.
    if ((state.error as { code?: string } | null)?.code === 'unavailable') state.error = null
    for (const entry of state.entries) {
      // A catching-up subscriber hears of it after its replay, in order.
      if (entry.catchUp) entry.catchUp.buffer.push(message)
      else entry.listener.resync(message)
    }
    this.updateStatuses()
  }

  private onError(socket: SocketLike, message: ErrorMessage): void {
    const error = Object.assign(new Error(message.message), { code: message.code })
    if (message.code === 'unsupported-version') {
      this.fatal = error
      socket.close(1002, 'protocol version')
      return this.updateStatuses()
    }
    const snapshot = message.ref === undefined ? undefined : this.snapshots.get(message.ref)
    if (snapshot) return this.failSnapshot(snapshot, error)
    const replay = message.ref === undefined ? undefined : this.replays.get(message.ref)
    if (replay) {
      // Its replay failed: it keeps the live batches but may have missed some.
      this.replays.delete(message.ref!)
      replay.entry.error = error
      this.endCatchUp(replay.entry, () => false)
      return this.updateStatuses()
    }
    if (message.key !== undefined && this.isLeft(message.key)) return
    const state = message.key === undefined ? undefined : this.keys.get(message.key)
    if (state) {
      state.error = error
      // The server will not answer this `sub` further, nor deliver the key:
      // not 'live', or pongs would move its cursor past what its subscribers hold.
      if (state.phase === 'sent') {
        state.phase = 'failed'
        state.held = null
        // Its snapshots fail for the same reason (the server's own answer to them comes later, unheard).
        for (const request of [...this.snapshots.values()]) {
          if (request.state === state) this.failSnapshot(request, error)
        }
      }
    }
    else {
      this.options.onWarning(message.message)
      if (message.code === 'unavailable') for (const each of this.keys.values()) each.error = error
    }
    this.updateStatuses()
  }

  // ── status ────────────────────────────────────────────────────────────────

  private updateStatuses(): void {
    for (const state of this.keys.values()) {
      for (const entry of state.entries) {
        const error = this.fatal ?? state.error ?? entry.error
        const status: LiveSyncStatus = error
          ? 'error'
          : state.phase === 'live' && !entry.catchUp
            ? 'live'
            // Once live, it is reconnecting until live again (also while re-subscribing on the new socket).
            : this.socketStatus === 'reconnecting' || entry.wasLive ? 'reconnecting' : 'connecting'
        if (status === 'live') entry.wasLive = true
        if (entry.reported?.status === status && entry.reported.error === error) continue
        entry.reported = { status, error }
        entry.listener.status?.(status, error)
      }
    }
  }
}

function minCursor(a: Lsn | null, b: Lsn | null): Lsn | null {
  if (!a) return b
  if (!b) return a
  return compareLsn(a, b) <= 0 ? a : b
}
