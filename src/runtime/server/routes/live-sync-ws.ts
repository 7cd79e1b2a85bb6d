/**
 * The WebSocket route (`/_live_sync` by default). Frames are handled by a
 * `PeerSession` per peer; the `live-sync:authorize` Nitro hook may refuse a
 * subscription by throwing.
 */
import type { Peer } from 'crossws'
import { defineWebSocketHandler } from 'h3'
import { useNitroApp } from 'nitropack/runtime'
import { PROTOCOL_VERSION, type KeyValue } from '../../shared/protocol'
import { PeerSession } from '../peer-session'
import { useLiveSyncEngine } from '../utils/live-sync-engine'

const sessions = new WeakMap<Peer, PeerSession>()

/** The `ws` library's socket, which crossws uses on Node: it can write a Buffer as a text frame. */
interface NodeWebSocket {
  send: (data: Buffer, options: { binary: boolean }) => void
  ping: () => void
}

function textBytesSender(peer: Peer): ((frame: Buffer) => void) | undefined {
  const socket = peer.websocket as unknown as Partial<NodeWebSocket>
  if (typeof socket?.ping !== 'function' || typeof socket.send !== 'function' || socket.send.length < 2) return undefined
  return frame => socket.send!(frame, { binary: false })
}

function requestedVersion(peer: Peer): string | null {
  try {
    return new URL(peer.request?.url ?? '', 'http://localhost').searchParams.get('v')
  }
  catch {
    return null
  }
}

export default defineWebSocketHandler({
  open(peer) {
    const send = (frame: string) => peer.send(frame)
    const version = requestedVersion(peer)
    if (version !== null && version !== String(PROTOCOL_VERSION)) {
      send(JSON.stringify({ type: 'error', code: 'unsupported-version', message: `[live-sync] this server speaks protocol version ${PROTOCOL_VERSION}, the client asked for ${JSON.stringify(version)}; reload the page.` }))
      peer.close(1002, 'unsupported protocol version')
      return
    }
    const nitroApp = useNitroApp()
    const session = new PeerSession({
      engine: useLiveSyncEngine(),
      send,
      sendBytes: textBytesSender(peer),
      bufferedAmount: () => (peer.websocket as { bufferedAmount?: number }).bufferedAmount ?? 0,
      authorize: (key: KeyValue) => nitroApp.hooks.callHook('live-sync:authorize', { key, request: peer.request as Request, peer }),
    })
    sessions.set(peer, session)
    session.hello()
  },
  message(peer, message) {
    void sessions.get(peer)?.receive(message.text())
  },
  close(peer) {
    sessions.get(peer)?.close()
    sessions.delete(peer)
  },
  error(peer) {
    sessions.get(peer)?.close()
    sessions.delete(peer)
  },
})
