/**
 * nuxt-live-sync: keeps Vue state in the browser live with PostgreSQL.
 *
 * Wires the pieces: a Nitro plugin owning the replication engine, the
 * crossws route it streams over, the auto-imported `useLiveSync`
 * composable, and the types (watch options on Sequelize models).
 */
import { join } from 'node:path'
import { addImports, addPlugin, addServerHandler, addServerImports, addServerPlugin, addTypeTemplate, createResolver, defineNuxtModule, resolvePath, useLogger } from '@nuxt/kit'
import { defu } from 'defu'
import { guardDevWebSocketUpgrades } from './dev-upgrade-guard'
import { loadModelTypes, readCachedModelTypes, type LoadedModelTypes } from './model-types'
import { renderModelDeclarations } from './runtime/server/model-declarations'
import { DEFAULT_DECODING_WORK_MEM, isMemorySize } from './runtime/server/engine/decoding-work-mem'
import { DEFAULT_LIMITS, normalizeOrigin, type LiveSyncLimits } from './runtime/server/security-settings'

export interface ModuleOptions {
  /**
   * The app module whose default export (or named export `sequelize`) is
   * the app's Sequelize instance, with its models defined, e.g.
   * `'~~/server/utils/db'`. Without it live sync stays off.
   */
  sequelize?: string
  /**
   * Connection URL for replication (runtime config, overridable by
   * `NUXT_LIVE_SYNC_DATABASE_URL`). Defaults to the Sequelize instance's
   * own connection settings. The role needs the REPLICATION attribute.
   */
  databaseUrl?: string
  /** Publication streamed; created by the migration. */
  publication?: string
  /**
   * At start-up, add each watched table to the publication and make it
   * REPLICA IDENTITY FULL where the connecting role may (default true), so
   * the order of migrations does not matter. `false` leaves the tables to
   * you: the server then only warns, with the SQL that fixes them.
   */
  manageTables?: boolean
  /** Route of the WebSocket. */
  path?: string
  /** Recent history kept for replaying to late subscribers and reconnecting clients. */
  replay?: {
    /** Rows kept across all keys (default 100 000). */
    maxRows?: number
    /** Age after which a transaction is dropped, in ms (default 120 000). */
    maxAgeMs?: number
  }
  /**
   * Every watched row is readable by anyone who can open the socket. Without
   * it (and without a `live-sync:authorize` handler) a production server
   * refuses every subscription. Runtime config: `NUXT_LIVE_SYNC_PUBLIC`.
   */
  public?: boolean
  /**
   * Origins besides the app's own whose pages may open the socket, e.g.
   * `['https://admin.example.com']`. Runtime config:
   * `NUXT_LIVE_SYNC_ALLOWED_ORIGINS` (comma separated).
   */
  allowedOrigins?: string[]
  /**
   * The app runs behind a proxy that sets `X-Forwarded-Host` and
   * `X-Forwarded-Proto`: the app's own origin is taken from them. Leave it
   * off when clients can reach the app directly. Runtime config:
   * `NUXT_LIVE_SYNC_TRUST_PROXY`.
   */
  trustProxy?: boolean
  /** Bounds per socket (runtime config `NUXT_LIVE_SYNC_LIMITS_MAX_FRAME_BYTES`, …). */
  limits?: Partial<LiveSyncLimits>
  /**
   * Serve metrics for Prometheus at `GET <path>/metrics` (default off). Each
   * scrape passes the `live-sync:metrics-authorize` Nitro hook; without a
   * handler a production server refuses (403), unless `{ public: true }` says
   * the app or its proxy protects the route (runtime config
   * `NUXT_LIVE_SYNC_METRICS_PUBLIC`).
   */
  metrics?: boolean | { public?: boolean }
  /**
   * Keys whose routing the server explains at debug level, one line per
   * decision (each transaction's changes for the key, subscriptions,
   * replays, refusals, resyncs), e.g. `['5']`. Runtime config:
   * `NUXT_LIVE_SYNC_DEBUG_KEYS` (comma separated).
   */
  debugKeys?: Array<string | number>
  /**
   * Postgres's `logical_decoding_work_mem` for the replication session
   * (default `'4MB'`; `false` keeps the server's, 64MB unless changed). A
   * transaction larger than this is spilled to disk while Postgres decodes
   * it, and at COMMIT Postgres first writes out what it still holds: the
   * smaller it is, the sooner a large transaction's first rows arrive (see
   * README, Performance). PostgreSQL 13+. Runtime config:
   * `NUXT_LIVE_SYNC_DECODING_WORK_MEM` (empty: the server's).
   */
  decodingWorkMem?: string | false
  /**
   * Redis URL (`redis://host:6379`) for running several instances of the
   * app: one of them streams a permanent replication slot and publishes
   * through Redis, which also keeps the replay history every instance
   * serves. Needs the `ioredis` package. Runtime config:
   * `NUXT_LIVE_SYNC_REDIS_URL`. Without it each instance streams alone.
   */
  redis?: string
  /**
   * With `redis`: the permanent replication slot the leading instance
   * streams (default `live_sync`; lower-case letters, digits, _). Runtime
   * config: `NUXT_LIVE_SYNC_SLOT_NAME`.
   */
  slotName?: string
}

const IDENTIFIER = /^[a-z_][\w$]{0,62}$/i
const SLOT_NAME = /^[a-z0-9_]{1,63}$/

/** `joinURL('/', '/_live_sync', 'metrics')` → `/_live_sync/metrics`. */
function joinURL(...parts: string[]): string {
  return `/${parts.map(part => part.replace(/^\/+|\/+$/g, '')).filter(Boolean).join('/')}`
}

export default defineNuxtModule<ModuleOptions>({
  meta: {
    name: 'nuxt-live-sync',
    configKey: 'liveSync',
    compatibility: { nuxt: '^4.0.0' },
  },
  defaults: {
    publication: 'live_sync',
    manageTables: true,
    path: '/_live_sync',
  },
  async setup(options, nuxt) {
    const resolver = createResolver(import.meta.url)
    // Configuration mistakes fail the build with a message, not the runtime.
    if (!options.path?.startsWith('/')) throw new Error(`[live-sync] liveSync.path must start with "/", got ${JSON.stringify(options.path)}.`)
    if (!IDENTIFIER.test(options.publication ?? '')) throw new Error(`[live-sync] liveSync.publication must be a plain identifier, got ${JSON.stringify(options.publication)}.`)
    if (options.slotName !== undefined && !SLOT_NAME.test(options.slotName)) throw new Error(`[live-sync] liveSync.slotName must be a replication slot name (lower-case letters, digits and _), got ${JSON.stringify(options.slotName)}.`)
    if (options.decodingWorkMem !== undefined && options.decodingWorkMem !== false && !isMemorySize(options.decodingWorkMem)) {
      throw new Error(`[live-sync] liveSync.decodingWorkMem must be a size such as '4MB' (kB, MB or GB) or false, got ${JSON.stringify(options.decodingWorkMem)}.`)
    }
    for (const origin of options.allowedOrigins ?? []) {
      if (!normalizeOrigin(origin)) throw new Error(`[live-sync] liveSync.allowedOrigins: ${JSON.stringify(origin)} is not an origin such as "https://admin.example.com".`)
    }
    if (options.debugKeys !== undefined && (!Array.isArray(options.debugKeys) || options.debugKeys.some(key => typeof key !== 'string' && typeof key !== 'number'))) {
      throw new Error(`[live-sync] liveSync.debugKeys must be an array of keys such as ['5'], got ${JSON.stringify(options.debugKeys)}.`)
    }
    if (options.metrics !== undefined && typeof options.metrics !== 'boolean' && (typeof options.metrics !== 'object' || options.metrics === null)) {
      throw new Error(`[live-sync] liveSync.metrics must be true, false or { public: true }, got ${JSON.stringify(options.metrics)}.`)
    }
    for (const [name, value] of Object.entries(options.limits ?? {})) {
      if (!(name in DEFAULT_LIMITS)) throw new Error(`[live-sync] liveSync.limits.${name} is not a limit (known: ${Object.keys(DEFAULT_LIMITS).join(', ')}).`)
      if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`[live-sync] liveSync.limits.${name} must be a positive integer, got ${JSON.stringify(value)}.`)
    }

    const metrics = options.metrics === true ? {} : options.metrics || null
    const metricsPath = joinURL(options.path!, 'metrics')
    nuxt.options.runtimeConfig.liveSync = defu(nuxt.options.runtimeConfig.liveSync as object | undefined, {
      databaseUrl: options.databaseUrl ?? '',
      publication: options.publication!,
      manageTables: options.manageTables !== false,
      // Explicit defaults, so that NUXT_LIVE_SYNC_REPLAY_MAX_ROWS / _MAX_AGE_MS override them.
      replay: { maxRows: 100_000, maxAgeMs: 120_000, ...options.replay },
      public: options.public ?? false,
      // A string, so that NUXT_LIVE_SYNC_ALLOWED_ORIGINS (comma separated) replaces it alike.
      allowedOrigins: (options.allowedOrigins ?? []).join(','),
      trustProxy: options.trustProxy ?? false,
      limits: { ...DEFAULT_LIMITS, ...options.limits },
      // A string, so that NUXT_LIVE_SYNC_DEBUG_KEYS (comma separated) replaces it alike.
      debugKeys: (options.debugKeys ?? []).map(String).join(','),
      metrics: { enabled: metrics !== null, public: metrics?.public ?? false, path: metricsPath },
      // Read as NUXT_LIVE_SYNC_REDIS_URL and NUXT_LIVE_SYNC_SLOT_NAME.
      redisUrl: options.redis ?? '',
      slotName: options.slotName ?? 'live_sync',
      // A string, so that NUXT_LIVE_SYNC_DECODING_WORK_MEM replaces it ('' = the server's own).
      decodingWorkMem: options.decodingWorkMem === false ? '' : options.decodingWorkMem ?? DEFAULT_DECODING_WORK_MEM,
    })
    nuxt.options.runtimeConfig.public.liveSync = defu(nuxt.options.runtimeConfig.public.liveSync as object | undefined, {
      path: options.path,
    })

    // The runtime ships as TypeScript-built ESM inside node_modules: let Nuxt/Nitro bundle it.
    nuxt.options.build.transpile.push(resolver.resolve('./runtime'))
    nuxt.options.nitro.experimental = defu(nuxt.options.nitro.experimental, { websocket: true })
    if (nuxt.options.dev) guardDevWebSocketUpgrades(nuxt)

    // Wire protocol types and patch helpers, for app code: `import type { Change } from '#live-sync'`.
    nuxt.options.alias['#live-sync'] = resolver.resolve('./runtime/shared/index')

    const sequelizeModule = options.sequelize ? await resolvePath(options.sequelize, { cwd: nuxt.options.rootDir }) : null
    // What the dev server writes once it discovered the models (kept by `nuxi` across builds: .nuxt/cache survives).
    const modelTypesFile = join(nuxt.options.buildDir, 'types/live-sync-models.d.ts')
    const modelCacheFile = join(nuxt.options.buildDir, 'cache/nuxt-live-sync/models.json')
    const devtoolsPage = resolver.resolve('./runtime/devtools/live-sync-devtools.html')
    nuxt.hook('nitro:config', (nitroConfig) => {
      nitroConfig.virtual ||= {}
      nitroConfig.virtual['#live-sync/sequelize'] = sequelizeModule
        ? `import * as app from ${JSON.stringify(sequelizeModule)}\nconst exports = app\nexport const configured = ${JSON.stringify(options.sequelize)}\nexport default exports['sequelize'] ?? exports['default'] ?? null\n`
        : 'export const configured = null\nexport default null\n'
      // Development only: where the dev server writes the model types, and the DevTools page.
      if (nuxt.options.dev) {
        nitroConfig.virtual['#live-sync/dev'] = `export const modelTypesFile = ${JSON.stringify(modelTypesFile)}\nexport const modelCacheFile = ${JSON.stringify(modelCacheFile)}\nexport const sequelizeModule = ${JSON.stringify(options.sequelize ?? null)}\nexport const devtoolsPage = ${JSON.stringify(devtoolsPage)}\n`
      }
    })

    addServerPlugin(resolver.resolve('./runtime/server/plugins/live-sync'))
    addServerHandler({ route: options.path!, handler: resolver.resolve('./runtime/server/routes/live-sync-ws') })
    if (metrics) addServerHandler({ route: metricsPath, method: 'get', handler: resolver.resolve('./runtime/server/routes/live-sync-metrics') })
    if (nuxt.options.dev) {
      // Nuxt DevTools' "Live Sync" tab and what it reads; none of it exists in a production build.
      const devtoolsPath = joinURL(options.path!, 'devtools')
      addServerHandler({ route: devtoolsPath, method: 'get', handler: resolver.resolve('./runtime/server/routes/live-sync-devtools') })
      addServerHandler({ route: joinURL(devtoolsPath, 'state'), method: 'get', handler: resolver.resolve('./runtime/server/routes/live-sync-devtools-state') })
      addServerPlugin(resolver.resolve('./runtime/server/plugins/live-sync-dev'))
      const { addCustomTab } = await import('@nuxt/devtools-kit')
      addCustomTab({
        name: 'live-sync',
        title: 'Live Sync',
        icon: 'carbon:data-share',
        view: { type: 'iframe', src: joinURL(nuxt.options.app.baseURL, devtoolsPath) },
      }, nuxt)
    }
    addServerImports([
      { name: 'useLiveSyncEngine', from: resolver.resolve('./runtime/server/utils/live-sync-engine') },
      { name: 'authorizeLiveSync', from: resolver.resolve('./runtime/server/utils/live-sync-authorize') },
      { name: 'hasLiveSyncAuthorizer', from: resolver.resolve('./runtime/server/utils/live-sync-authorize') },
      { name: 'useLiveSyncStats', from: resolver.resolve('./runtime/server/utils/live-sync-stats') },
    ])
    addImports([{ name: 'useLiveSync', from: resolver.resolve('./runtime/app/composables/useLiveSync') }])
    addPlugin({ src: resolver.resolve('./runtime/app/plugins/live-sync.client'), mode: 'client' })

    // `useLiveSync`'s model names and rows, from the app's watched models (see model-types.ts).
    let loaded: Promise<LoadedModelTypes> | null = null
    let reported = false
    addTypeTemplate({
      filename: 'types/live-sync-models.d.ts',
      getContents: async () => {
        const source = `the watched models of ${options.sequelize}`
        if (!sequelizeModule) return renderModelDeclarations(null, 'liveSync.sequelize is not set; model names are not checked')
        loaded ??= loadModelTypes(sequelizeModule, { rootDir: nuxt.options.rootDir, alias: nuxt.options.alias })
        const result = await loaded
        const cached = readCachedModelTypes(modelCacheFile)
        // The dev server's discovery, when newer than this process's import or when the import found none.
        if (cached && (!result.models || cached.writtenAt > result.at)) return renderModelDeclarations(cached.models, source)
        if (result.models) return renderModelDeclarations(result.models, source)
        if (!reported) {
          reported = true
          useLogger('live-sync').info(`model names in useLiveSync are not checked: ${options.sequelize} gave no models at build time (${result.problem}). Define the models when NUXT_LIVE_SYNC_TYPES is set, or run \`nuxi dev\` once with a database (see the README, "Typed model names").`)
        }
        return renderModelDeclarations(null, `no models known at build time (${result.problem}); model names are not checked`)
      },
    }, { nuxt: true })

    // Ambient, so no top-level import: a module file would make it an augmentation of a module that does not exist.
    addTypeTemplate({
      filename: 'types/live-sync-sequelize.d.ts',
      getContents: () => `// Generated by nuxt-live-sync
declare module '#live-sync/sequelize' {
  /** The liveSync.sequelize option, or null when it is not set. */
  export const configured: string | null
  const sequelize: import('sequelize').Sequelize | (() => import('sequelize').Sequelize | Promise<import('sequelize').Sequelize>) | null
  export default sequelize
}

declare module '#live-sync/dev' {
  export const modelTypesFile: string
  export const modelCacheFile: string
  export const sequelizeModule: string | null
  export const devtoolsPage: string
}
`,
    }, { nitro: true })

    addTypeTemplate({
      filename: 'types/live-sync.d.ts',
      getContents: () => `// Generated by nuxt-live-sync
import type { LiveSyncClient } from ${JSON.stringify(resolver.resolve('./runtime/app/live-sync-client'))}
import type { LiveSyncAuthorizeContext, LiveSyncRequest } from ${JSON.stringify(resolver.resolve('./runtime/server/utils/live-sync-authorize'))}
import type { LiveSyncMetricsAuthorizeContext } from ${JSON.stringify(resolver.resolve('./runtime/server/utils/live-sync-metrics'))}
import type { KeyValue, SnapshotModel } from ${JSON.stringify(resolver.resolve('./runtime/shared/protocol'))}
import type { ServerSnapshot } from ${JSON.stringify(resolver.resolve('./runtime/shared/server-snapshot'))}
export type {} from ${JSON.stringify(resolver.resolve('./runtime/server/engine/watch-options'))}
export type { LiveSyncAuthorizeContext, LiveSyncMetricsAuthorizeContext, LiveSyncRequest }

declare module 'nitropack/types' {
  interface NitroRuntimeHooks {
    /**
     * Decides whether \`request\` may read the rows of \`key\`: return to allow,
     * throw (e.g. createError({ statusCode: 403 })) to refuse. Called for
     * every subscription on every socket (again after each reconnect).
     */
    'live-sync:authorize': (context: LiveSyncAuthorizeContext) => void | Promise<void>
    /**
     * Decides whether a scrape of the metrics endpoint (\`liveSync.metrics\`)
     * may read them: return to allow, throw (e.g. createError({ statusCode: 401 }))
     * to refuse. Called for every scrape.
     */
    'live-sync:metrics-authorize': (context: LiveSyncMetricsAuthorizeContext) => void | Promise<void>
  }
}

declare module 'h3' {
  interface H3EventContext {
    /** Set by nuxt-live-sync: data loaded while handling this request is at least this new. */
    liveSyncCursor?: string | null
    /** Set by nuxt-live-sync: reads a key's rows for a server render (authorized like a subscription). */
    liveSyncSnapshot?: (key: KeyValue, models: SnapshotModel[]) => Promise<ServerSnapshot>
  }
}

declare module '#app' {
  interface NuxtApp {
    $liveSync: LiveSyncClient
  }
}

export {}
`,
    }, { nitro: true, nuxt: true })
  },
})
