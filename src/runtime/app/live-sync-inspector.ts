/**
 * What the Nuxt DevTools tab shows of this browser tab's connection: the
 * last transactions delivered and the subscriptions the server refused or
 * dropped. Created only in development (the client plugin passes one when
 * `import.meta.dev`), so production pays nothing for it.
 */
import type { ServerMessage } from '../shared/protocol'

/** A `tx` frame this tab received. */
export interface InspectedTransaction {
  /** When it arrived (ms since the epoch, sub-millisecond). */
  at: number
  key: string
  cursor: string
  /** Changes by operation. */
  ops: { insert: number, update: number, delete: number }
  models: string[]
  /** Characters of the frame (its size on the wire, for ASCII). */
  size: number
  /** Part of a replay (a late subscriber catching up), not live. */
  replay: boolean
}

/** A subscription the server refused, a resync it asked for, or the socket it closed. */
export interface InspectedRefusal {
  at: number
  key: string | null
  /** An error code (`forbidden`, `too-many-keys`, …), `resync:<reason>`, or a close code. */
  code: string | number
  message: string
}

const FEED_SIZE = 200
const REFUSALS_SIZE = 100

function now(): number {
  return performance.timeOrigin + performance.now()
}

export class LiveSyncInspector {
  readonly feed: InspectedTransaction[] = []
  readonly refusals: InspectedRefusal[] = []

  /** A frame arrived (`size`: its length). */
  frame(message: ServerMessage, size: number): void {
    if (message.type === 'tx') {
      const ops = { insert: 0, update: 0, delete: 0 }
      const models = new Set<string>()
      for (const change of message.changes) {
        ops[change.op]++
        models.add(change.model)
      }
      push(this.feed, { at: now(), key: message.key, cursor: message.cursor, ops, models: [...models], size, replay: message.ref !== undefined }, FEED_SIZE)
    }
    else if (message.type === 'error') {
      push(this.refusals, { at: now(), key: message.key ?? null, code: message.code, message: message.message }, REFUSALS_SIZE)
    }
    else if (message.type === 'resync') {
      push(this.refusals, { at: now(), key: message.key, code: `resync:${message.reason}`, message: `the server asked to reload the key's data (${message.reason})` }, REFUSALS_SIZE)
    }
  }

  /** The socket closed (by the server over a bound, or the connection dropped). */
  closed(code: number | undefined, reason: string | undefined): void {
    if (code === 1000 || code === undefined) return
    push(this.refusals, { at: now(), key: null, code, message: reason || 'the connection closed' }, REFUSALS_SIZE)
  }
}

function push<T>(list: T[], item: T, bound: number): void {
  list.push(item)
  if (list.length > bound) list.shift()
}
