/**
 * Bounds the frames a live sync client may send before they are buffered.
 *
 * Nitro's Node presets (node-server, and the dev worker) build crossws's
 * Node adapter, and with it a `ws` server, from `nitroApp.h3App.websocket`
 * after the Nitro plugins ran; Nitro has no option for the server's
 * `maxPayload`, so `ws` keeps its default of 100 MiB. `serverOptions` set on
 * that object would bind every WebSocket route of the app, not only ours.
 * So the limit is set per socket: crossws calls a global `open` hook
 * synchronously as `ws` emits 'connection', before the socket's first byte
 * is parsed, and that hook sets the socket's frame parser limit for the
 * sockets our `upgrade` hook marked. `ws` then refuses a longer frame (or
 * fragmented message) from its header, before buffering it, and closes
 * with 1009. Elsewhere (Bun, Deno, workers) there is no such parser to
 * reach: the route checks each frame's length as it arrives instead.
 */
import type { AdapterOptions, Peer } from 'crossws'

/** Key in crossws's per-connection context under which the upgrade hook leaves the limit. */
export const FRAME_LIMIT_CONTEXT_KEY = 'liveSyncMaxFrameBytes'

/** The frame parser of crossws's bundled `ws` socket (internal to `ws`, stable across its 8.x releases). */
interface WsReceiver {
  _maxPayload?: unknown
}

interface WsSocket {
  _receiver?: WsReceiver
  on?: (event: 'error', listener: (error: { code?: string }) => void) => unknown
}

/**
 * Sets the parser limit of a Node `ws` socket; false when the peer has none.
 * `onTooLarge` is called when the socket is closed for a longer frame.
 */
export function limitFramePayload(peer: Peer, maxBytes: number, onTooLarge?: () => void): boolean {
  const socket = peer.websocket as WsSocket | undefined
  const receiver = socket?._receiver
  if (!receiver || typeof receiver._maxPayload !== 'number') return false
  receiver._maxPayload = maxBytes
  if (onTooLarge) socket!.on?.('error', error => error?.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' && onTooLarge())
  return true
}

const installed = new WeakSet<object>()

/**
 * Adds the global `open` hook to the app's crossws options (keeping any
 * the app has). Peers opened through a route that did not set the context
 * key are left alone.
 */
export function installFrameLimit(options: AdapterOptions, onTooLarge?: () => void): void {
  if (installed.has(options)) return
  installed.add(options)
  const previous = options.hooks?.open
  options.hooks = {
    ...options.hooks,
    open(peer) {
      const maxBytes = (peer.context as Record<string, unknown> | undefined)?.[FRAME_LIMIT_CONTEXT_KEY]
      if (typeof maxBytes === 'number') limitFramePayload(peer, maxBytes, onTooLarge)
      return previous?.(peer)
    },
  }
}
