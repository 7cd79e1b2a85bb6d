/**
 * Who may subscribe when the app registered no `live-sync:authorize`
 * handler, and what the server says about it once at start. Deny by
 * default: only `liveSync.public` or `nuxi dev` open it.
 */

export type DefaultAccess
  /** A handler decides. */
  = | 'handler'
  /** `liveSync.public`: anyone who can open the socket reads every watched row. */
    | 'public'
  /** `nuxi dev` without a handler: open, with a warning. */
    | 'dev-open'
  /** A production server without a handler: every subscription refused. */
    | 'closed'

export function defaultAccess(state: { hasHandler: boolean, public: boolean, dev: boolean }): DefaultAccess {
  if (state.hasHandler) return 'handler'
  if (state.public) return 'public'
  return state.dev ? 'dev-open' : 'closed'
}

const EXAMPLE = `// server/plugins/live-sync-auth.ts
export default defineNitroPlugin((nitroApp) => {
  nitroApp.hooks.hook('live-sync:authorize', async ({ key, request }) => {
    const { user } = await requireUserSession(request) // nuxt-auth-utils, or read your own cookie from request.headers
    if (!user.organizationIds.includes(Number(key))) throw createError({ statusCode: 403 })
  })
})`

/** The one start-up message for `access`, or null when there is nothing to say. */
export function defaultAccessNotice(access: DefaultAccess): { level: 'warn' | 'error', message: string } | null {
  const fix = `Add a Nitro plugin that decides who may read a key:\n${EXAMPLE}\nor set liveSync: { public: true } in nuxt.config (NUXT_LIVE_SYNC_PUBLIC=true) if every watched row may be read by anyone who can open the socket.`
  switch (access) {
    case 'dev-open':
      return { level: 'warn', message: `[live-sync] no 'live-sync:authorize' handler is registered: in development every subscription is allowed, but a production build refuses them all. ${fix}` }
    case 'closed':
      return { level: 'error', message: `[live-sync] no 'live-sync:authorize' handler is registered, so every subscription is refused (error 'forbidden'). ${fix}` }
    default:
      return null
  }
}

const METRICS_EXAMPLE = `// server/plugins/live-sync-metrics.ts
export default defineNitroPlugin((nitroApp) => {
  nitroApp.hooks.hook('live-sync:metrics-authorize', ({ event }) => {
    if (getRequestHeader(event, 'authorization') !== \`Bearer \${process.env.METRICS_TOKEN}\`) throw createError({ statusCode: 401 })
  })
})`

/** The one start-up message about the metrics endpoint at `path`, or null when there is nothing to say. */
export function metricsAccessNotice(access: DefaultAccess, path: string): { level: 'warn' | 'error', message: string } | null {
  const fix = `Add a Nitro plugin that decides who may scrape it:\n${METRICS_EXAMPLE}\nor set liveSync: { metrics: { public: true } } (NUXT_LIVE_SYNC_METRICS_PUBLIC=true) if the app or its proxy already protects ${path}.`
  switch (access) {
    case 'dev-open':
      return { level: 'warn', message: `[live-sync] no 'live-sync:metrics-authorize' handler is registered: in development GET ${path} answers anyone, but a production build refuses every scrape (403). ${fix}` }
    case 'closed':
      return { level: 'error', message: `[live-sync] no 'live-sync:metrics-authorize' handler is registered, so GET ${path} refuses every scrape (403). ${fix}` }
    default:
      return null
  }
}
