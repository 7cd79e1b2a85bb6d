/** A scripted stand-in for the browser WebSocket, driven by the tests. */
import { vi } from 'vitest'
import { LiveSyncClient, type KeyListener, type LiveSyncClientOptions, type LiveSyncStatus, type SocketLike } from '../../src/runtime/app/live-sync-client'
import { PROTOCOL_VERSION, type ClientMessage, type ResyncMessage, type ServerMessage, type TxMessage } from '../../src/runtime/shared/protocol'

export class FakeSocket implements SocketLike {
  readyState = 0
  onopen: ((event: unknown) => void) | null = null
  onmessage: ((event: { data: unknown }) => void) | null = null
  onclose: ((event: unknown) => void) | null = null
  onerror: ((event: unknown) => void) | null = null
  /** Every frame the client sent, parsed. */
  readonly sent: ClientMessage[] = []
  /** The client's close() calls. */
  readonly closes: Array<{ code?: number, reason?: string }> = []
  private read = 0

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open')
    this.sent.push(JSON.parse(data) as ClientMessage)
  }

  close(code?: number, reason?: string): void {
    this.closes.push({ code, reason })
    this.readyState = 3
  }

  /** The socket opens and the server greets. */
  open(hello: Partial<ServerMessage & { type: 'hello' }> = {}): void {
    this.readyState = 1
    this.onopen?.({})
    this.receive({ type: 'hello', v: PROTOCOL_VERSION, epoch: 'epoch-1', cursor: null, ...hello } as ServerMessage)
  }

  receive(message: ServerMessage): void {
    this.onmessage?.({ data: JSON.stringify(message) })
  }

  /** The connection drops (or the server closes it with `code`). */
  drop(code = 1006): void {
    this.readyState = 3
    this.onclose?.({ code })
  }

  /** The frames sent since the last call. */
  take(): ClientMessage[] {
    const frames = this.sent.slice(this.read)
    this.read = this.sent.length
    return frames
  }
}

/** A client on fake sockets with short, round timings. */
export function fakeClient(options: Partial<LiveSyncClientOptions> = {}) {
  const sockets: FakeSocket[] = []
  const warnings: string[] = []
  const client = new LiveSyncClient({
    url: 'ws://test.local/_live_sync',
    createSocket: (url) => {
      const socket = new FakeSocket(url)
      sockets.push(socket)
      return socket
    },
    heartbeatIntervalMs: 1_000,
    heartbeatTimeoutMs: 300,
    reconnect: { minDelayMs: 100, maxDelayMs: 1_000 },
    random: () => 0.5,
    onWarning: message => warnings.push(message),
    ...options,
  })
  return {
    client,
    sockets,
    warnings,
    /** The newest socket. */
    socket(): FakeSocket {
      const socket = sockets.at(-1)
      if (!socket) throw new Error('no socket was created')
      return socket
    },
  }
}

export type Received = ['tx', string, number | undefined] | ['resync', string]

/** A listener that records what it is told (read it through the object: its getters are live). */
export function recorder() {
  const received: Received[] = []
  const batches: TxMessage[] = []
  const statuses: LiveSyncStatus[] = []
  const errors: Array<Error | null> = []
  const listener: KeyListener = {
    batch: vi.fn((message: TxMessage) => {
      batches.push(message)
      received.push(['tx', message.cursor, message.ref])
    }),
    resync: vi.fn((message: ResyncMessage) => {
      received.push(['resync', message.reason])
    }),
    status: (status, error) => {
      statuses.push(status)
      errors.push(error)
    },
  }
  return {
    listener,
    received,
    batches,
    statuses,
    errors,
    get status() {
      return statuses.at(-1)
    },
    /** The cursors of the batches received, in order. */
    get cursors() {
      return batches.map(batch => batch.cursor)
    },
  }
}

/** Statuses with consecutive repeats folded. */
export const distinct = <T>(values: T[]): T[] => values.filter((value, i) => i === 0 || values[i - 1] !== value)
