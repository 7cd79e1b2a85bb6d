/**
 * The WebSocket route (`/_live_sync` by default). The upgrade is refused
 * with 403 when its `Origin` is foreign (cross-site WebSocket hijacking);
 * frames are handled by a `PeerSession` per peer, and every subscription
 * passes `authorizeLiveSync` (the `live-sync:authorize` hook, deny by
 * default in production).
 */
import type { Peer } from 'crossws'
import { defineWebSocketHandler } from 'h3'
import { CloseCode, PROTOCOL_VERSION, type ErrorCode, type KeyValue } from '../../shared/protocol'
import { liveSyncLogger } from '../engine/logger'
import { FRAME_LIMIT_CONTEXT_KEY } from '../frame-limit'
import { PeerSession } from '../peer-session'
import { isOriginAllowed } from '../security-settings'
import { authorizeLiveSync, type LiveSyncRequest } from '../utils/live-sync-authorize'
import { useLiveSyncEngine } from '../utils/live-sync-engine'
import { useLiveSyncSettings } from '../utils/live-sync-settings'
import { countLiveSync, recordLiveSyncEvent, type LiveSyncStats } from '../utils/live-sync-stats'

/**
 * After the server closes a socket over a bound, how long its close frame
 * may take to get out (ms). A socket that does not read never receives it:
 * it is then dropped, and what was queued for it freed.
 */
const CLOSE_GRACE_MS = 1000

const sessions = new WeakMap<Peer, PeerSession>()

/** The `ws` library's socket, which crossws uses on Node: it can write a Buffer as a text frame. */
interface NodeWebSocket {
  send: (data: Buffer, options: { binary: boolean }) => void
  ping: () => void
  bufferedAmount: number
  /** The TCP socket under it. */
  _socket?: { cork: () => void, uncork: () => void, destroyed?: boolean }
}

const TEXT = { binary: false }

/**
 * How many bytes of large writes (`LARGE_WRITE_BYTES` or more to one socket)
 * corked sockets may write out in one event-loop turn before the loop gets to
 * poll I/O again. A write copies the frames into the kernel's socket buffer
 * (up to a few MiB per socket): a large transaction fanned out to hundreds of
 * sockets whose buffers are still filling (readers that stopped reading, say)
 * would otherwise hold the loop, and every page render and query of the app
 * behind it, for all of them at once. Small writes do not count: they cost a
 * system call each, whatever their size, and deferring them would only split
 * the frames of one socket over more of them.
 */
const UNCORK_BYTES_PER_TURN = 4 * 1024 * 1024
const LARGE_WRITE_BYTES = 64 * 1024

/** Uncorks a socket; returns the bytes it had corked. */
type Uncork = () => number

const corkedSockets: Uncork[] = []
let corkedHead = 0
let uncorkScheduled = false

/** Uncorks the sockets corked this turn, up to the byte budget; the rest after the event loop polled I/O. */
function uncorkTurn(): void {
  let budget = UNCORK_BYTES_PER_TURN
  while (corkedHead < corkedSockets.length && budget > 0) {
    let bytes = 0
    try {
      bytes = corkedSockets[corkedHead++]!()
    }
    catch (error) {
      // One socket's failure must not leave the others corked.
      liveSyncLogger().warn(`[live-sync] a socket could not be written: ${(error as Error)?.message ?? error}`)
    }
    if (bytes >= LARGE_WRITE_BYTES) budget -= bytes
  }
  // Drop what was done (under steady overload the queue would otherwise never empty, and grow).
  if (corkedHead === corkedSockets.length) corkedSockets.length = 0
  else corkedSockets.splice(0, corkedHead)
  corkedHead = 0
  if (corkedSockets.length > 0) setImmediate(uncorkTurn)
  else uncorkScheduled = false
}

function scheduleUncork(uncork: Uncork): void {
  corkedSockets.push(uncork)
  if (!uncorkScheduled) {
    uncorkScheduled = true
    process.nextTick(uncorkTurn)
  }
}

/**
 * Writes UTF-8 frames as text frames. The TCP socket is corked from the first
 * frame of an event-loop turn until the end of that turn's synchronous work,
 * so the frames of several transactions read from one replication packet
 * leave in one `writev` (a loopback write costs tens of µs: it runs the
 * receiver's TCP work inline). Past `UNCORK_BYTES_PER_TURN`, the remaining
 * sockets are written out in later turns, so the loop stays responsive.
 */
function textBytesSender(peer: Peer): ((frame: Buffer) => void) | undefined {
  const socket = peer.websocket as unknown as Partial<NodeWebSocket>
  if (typeof socket?.ping !== 'function' || typeof socket.send !== 'function' || socket.send.length < 2) return undefined
  let corked = false
  let corkedBytes = 0
  const uncork = () => {
    corked = false
    const tcp = socket._socket
    if (tcp && !tcp.destroyed) tcp.uncork()
    const bytes = corkedBytes
    corkedBytes = 0
    return bytes
  }
  return (frame) => {
    const tcp = socket._socket
    if (!corked && tcp && typeof tcp.cork === 'function') {
      corked = true
      tcp.cork()
      scheduleUncork(uncork)
    }
    if (corked) corkedBytes += frame.length
    socket.send!(frame, TEXT)
  }
}

/** Bytes queued to the socket and not sent yet (undefined where the runtime does not tell). */
function backlogOf(peer: Peer): (() => number) | undefined {
  const socket = peer.websocket as unknown as Partial<NodeWebSocket>
  if (typeof socket?.bufferedAmount !== 'number') return undefined
  return () => socket.bufferedAmount!
}

function requestedVersion(peer: Peer): string | null {
  try {
    return new URL(peer.request?.url ?? '', 'http://localhost').searchParams.get('v')
  }
  catch {
    return null
  }
}

/**
 * The upgrade request as a web `Request` (on Node crossws gives only its URL
 * and headers) with the connection's context, which h3 session helpers need.
 */
function webRequest(peer: Peer): LiveSyncRequest {
  const request = peer.request
  return Object.assign(new Request(request?.url ?? 'http://localhost/', { headers: request?.headers }), { context: peer.context ?? {} })
}

function frameLength(data: unknown): number {
  if (typeof data === 'string') return data.length
  return (data as { byteLength?: number } | null)?.byteLength ?? 0
}

/** The counter of each refusal a subscription can get. */
const REFUSALS: Partial<Record<ErrorCode, keyof LiveSyncStats>> = {
  'forbidden': 'refusedSubscriptions',
  'too-many-keys': 'tooManyKeys',
  'unavailable': 'unavailable',
}

function refused(key: string, code: ErrorCode, message: string): void {
  const counter = REFUSALS[code]
  if (counter) countLiveSync(counter)
  const reason = message.replace(/^\[live-sync\] /, '')
  recordLiveSyncEvent({ at: Date.now(), code, keys: [key], reason })
  useLiveSyncEngine()?.explain(key, `subscription refused (${code}): ${reason}`)
}

function closeOverLimit(peer: Peer, code: number, reason: string, keys: string[] = []): void {
  countLiveSync(code === CloseCode.SLOW_CONSUMER ? 'slowConsumers' : code === CloseCode.FRAME_TOO_LARGE ? 'framesTooLarge' : 'tooManyFrames')
  recordLiveSyncEvent({ at: Date.now(), code, keys: keys.slice(0, 20), reason })
  const engine = useLiveSyncEngine()
  for (const key of keys) engine?.explain(key, `a subscriber's socket was closed with ${code} (${reason}).`)
  peer.close(code, reason)
  setTimeout(() => peer.terminate(), CLOSE_GRACE_MS).unref?.()
}

let warnedOrigin = false

function endSession(peer: Peer): void {
  const session = sessions.get(peer)
  if (!session) return
  session.close()
  sessions.delete(peer)
  countLiveSync('sockets', -1)
}

export default defineWebSocketHandler({
  upgrade(request) {
    const settings = useLiveSyncSettings()
    if (!isOriginAllowed(request.headers, settings)) {
      countLiveSync('refusedOrigins')
      if (!warnedOrigin) {
        warnedOrigin = true
        liveSyncLogger().warn(`[live-sync] refused a WebSocket upgrade from origin ${JSON.stringify(request.headers.get('origin'))} (host ${JSON.stringify(request.headers.get('host'))}): only the app's own origin and liveSync.allowedOrigins may connect. If this is your app behind a proxy that rewrites Host, set liveSync.trustProxy (it then reads X-Forwarded-Host/-Proto) or list the origin in liveSync.allowedOrigins (NUXT_LIVE_SYNC_ALLOWED_ORIGINS). Later refusals are counted, not logged.`)
      }
      return new Response('[live-sync] origin not allowed', { status: 403, statusText: 'Forbidden' })
    }
    // Read by the frame limit's global open hook (see frame-limit.ts).
    request.context[FRAME_LIMIT_CONTEXT_KEY] = settings.limits.maxFrameBytes
  },
  open(peer) {
    const send = (frame: string) => peer.send(frame)
    const version = requestedVersion(peer)
    if (version !== null && version !== String(PROTOCOL_VERSION)) {
      send(JSON.stringify({ type: 'error', code: 'unsupported-version', message: `[live-sync] this server speaks protocol version ${PROTOCOL_VERSION}, the client asked for ${JSON.stringify(version)}; reload the page.` }))
      peer.close(CloseCode.UNSUPPORTED_VERSION, 'unsupported protocol version')
      return
    }
    const settings = useLiveSyncSettings()
    let request: LiveSyncRequest | undefined
    const session = new PeerSession({
      engine: useLiveSyncEngine(),
      send,
      sendBytes: textBytesSender(peer),
      // Every subscription, on every socket (so again after each reconnect). The upgrade request is
      // built only when a handler reads it (a web Request costs kilobytes per socket), then kept.
      authorize: (key: KeyValue) => authorizeLiveSync({
        key,
        peer,
        get request() {
          return (request ??= webRequest(peer))
        },
      }),
      limits: settings.limits,
      bufferedAmount: backlogOf(peer),
      close: (code, reason, keys) => closeOverLimit(peer, code, reason, keys),
      refused,
    })
    sessions.set(peer, session)
    countLiveSync('sockets')
    countLiveSync('socketsOpened')
    session.hello()
  },
  message(peer, message) {
    const session = sessions.get(peer)
    if (!session || session.isClosed) return
    // On Node the socket's parser refused longer frames already (frame-limit.ts); elsewhere this is the bound.
    if (frameLength(message.rawData) > useLiveSyncSettings().limits.maxFrameBytes) {
      session.close()
      return closeOverLimit(peer, CloseCode.FRAME_TOO_LARGE, 'frame too large')
    }
    void session.receive(message.text())
  },
  close(peer) {
    endSession(peer)
  },
  error(peer) {
    endSession(peer)
  },
})
