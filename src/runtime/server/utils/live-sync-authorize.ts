/**
 * Who may read a key: the `live-sync:authorize` Nitro hook, and the policy
 * when no handler is registered (deny in production, unless
 * `liveSync.public`; allow in `nuxi dev`, with one warning at start).
 */
import type { Peer } from 'crossws'
import type { H3Event } from 'h3'
import { createError } from 'h3'
import { useNitroApp } from 'nitropack/runtime'
import type { KeyValue } from '../../shared/protocol'
import { defaultAccess, type DefaultAccess } from '../default-access'
import { useLiveSyncSettings } from './live-sync-settings'

/**
 * A web `Request` carrying the per-request `context` object of h3/crossws,
 * so that h3's session helpers (and nuxt-auth-utils' `getUserSession`,
 * built on them) accept it as they accept an event.
 */
export type LiveSyncRequest = Request & { context: Record<string, unknown> }

/** What a `live-sync:authorize` handler is given. */
export interface LiveSyncAuthorizeContext {
  /** The subscription key as the client sent it (`'5'` or `5`). */
  key: KeyValue
  /**
   * The request asking: for a socket, its upgrade request (the URL and
   * headers, cookies included, of the page's WebSocket handshake).
   */
  request: LiveSyncRequest
  /** The socket, when the key is subscribed over one. */
  peer?: Peer
  /** The HTTP event, when the key is read over a plain request. */
  event?: H3Event
}

const HOOK = 'live-sync:authorize'

/** Whether a Nitro plugin registered a handler of `hook`. */
export function hasHookHandler(nitroApp: ReturnType<typeof useNitroApp>, hook: string): boolean {
  // hookable keeps the handlers by name and deletes the name when the last one goes.
  const hooks = (nitroApp.hooks as unknown as { _hooks?: Record<string, unknown[] | undefined> })._hooks
  return (hooks?.[hook]?.length ?? 0) > 0
}

/** Whether the app registered a `live-sync:authorize` handler (a Nitro plugin that hooks it). */
export function hasLiveSyncAuthorizer(nitroApp = useNitroApp()): boolean {
  return hasHookHandler(nitroApp, HOOK)
}

/** How subscriptions are decided on this server (see `DefaultAccess`). */
export function liveSyncAccess(nitroApp = useNitroApp()): DefaultAccess {
  return defaultAccess({ hasHandler: hasLiveSyncAuthorizer(nitroApp), public: useLiveSyncSettings().public, dev: Boolean(import.meta.dev) })
}

/**
 * Resolves when `context.key` may be read by whoever sent `context.request`;
 * throws (an h3 error, 403) when not. A registered handler decides; without
 * one, `liveSync.public` or `nuxi dev` allow, and a production server refuses.
 */
export async function authorizeLiveSync(context: LiveSyncAuthorizeContext): Promise<void> {
  const nitroApp = useNitroApp()
  switch (liveSyncAccess(nitroApp)) {
    case 'handler':
      await nitroApp.hooks.callHook(HOOK, context)
      return
    case 'public':
    case 'dev-open':
      return
    case 'closed':
      throw createError({ statusCode: 403, statusMessage: 'not authorized' })
  }
}
