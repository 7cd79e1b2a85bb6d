/**
 * The security settings of the live sync socket (`liveSync.public`,
 * `allowedOrigins`, `trustProxy`, `limits`), read from runtime config so
 * that `NUXT_LIVE_SYNC_*` variables override them in a built server.
 * Framework-free: the module uses the defaults at build time, the route
 * resolves the runtime values once.
 */

/** Bounds on what one socket may make the server hold or do. */
export interface LiveSyncLimits {
  /** Longest frame a client may send, in bytes; a longer one closes the socket with 1009 before it is buffered whole. */
  maxFrameBytes: number
  /** Keys one socket may subscribe to; one more gets an `error` frame (`too-many-keys`). */
  maxKeysPerSocket: number
  /** Bytes that may wait unsent to one socket; a socket past it is closed with 4008 (slow consumer). */
  maxBufferedBytes: number
  /** Sustained rate of client frames per socket (token bucket refill per second). */
  framesPerSecond: number
  /**
   * Frames a socket may send at once (the bucket's size), and frames that
   * may wait for an earlier frame's authorization. Past either the socket
   * is closed with 1008. At least `maxKeysPerSocket`, so a tab resubscribes
   * all its keys at once after a reconnect.
   */
  frameBurst: number
  /**
   * How long (ms) an authorization may take. A `live-sync:authorize`
   * handler that has not answered by then counts as a refusal (`forbidden`),
   * so a hung session store cannot keep a tab waiting, nor the socket's
   * later frames queued behind it, for ever.
   */
  authorizeTimeoutMs: number
}

export const DEFAULT_LIMITS: LiveSyncLimits = {
  maxFrameBytes: 64 * 1024,
  maxKeysPerSocket: 1000,
  maxBufferedBytes: 4 * 1024 * 1024,
  framesPerSecond: 100,
  frameBurst: 1200,
  authorizeTimeoutMs: 10_000,
}

export interface LiveSyncSecuritySettings {
  /** Every watched row is readable by anyone who can open the socket (no authorize handler needed). */
  public: boolean
  /** Origins (`https://admin.example.com`) allowed besides the app's own. */
  allowedOrigins: Set<string>
  /** Take the app's own origin from `X-Forwarded-Host` / `X-Forwarded-Proto`. */
  trustProxy: boolean
  limits: LiveSyncLimits
}

/** What the module puts in `runtimeConfig.liveSync` (env variables may turn numbers and booleans into strings). */
export interface LiveSyncSecurityConfig {
  public?: boolean | string
  allowedOrigins?: string | string[]
  trustProxy?: boolean | string
  limits?: Partial<Record<keyof LiveSyncLimits, number | string>>
}

type Warn = (message: string) => void

function flag(value: unknown): boolean {
  return value === true || value === 'true' || value === '1'
}

/** `https://App.example.com/` → `https://app.example.com`; null for anything that is not an http(s) origin. */
export function normalizeOrigin(value: string): string | null {
  try {
    const url = new URL(value.trim())
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null
    return url.origin
  }
  catch {
    return null
  }
}

/** A list of origins, as an array or comma separated (`NUXT_LIVE_SYNC_ALLOWED_ORIGINS`). */
export function parseAllowedOrigins(value: unknown, warn: Warn): Set<string> {
  const entries = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : []
  const origins = new Set<string>()
  for (const entry of entries) {
    if (typeof entry !== 'string' || entry.trim() === '') continue
    const origin = normalizeOrigin(entry)
    if (origin) origins.add(origin)
    else warn(`[live-sync] liveSync.allowedOrigins: ${JSON.stringify(entry)} is not an origin such as "https://admin.example.com"; it is ignored.`)
  }
  return origins
}

/** The limits with every value a positive integer; a wrong one is reported and its default used. */
export function resolveLimits(value: LiveSyncSecurityConfig['limits'], warn: Warn): LiveSyncLimits {
  const limits = { ...DEFAULT_LIMITS }
  for (const name of Object.keys(DEFAULT_LIMITS) as Array<keyof LiveSyncLimits>) {
    const raw = value?.[name]
    if (raw === undefined || raw === '') continue
    const number = typeof raw === 'number' ? raw : Number(raw)
    if (Number.isSafeInteger(number) && number > 0) limits[name] = number
    else warn(`[live-sync] liveSync.limits.${name} must be a positive integer, got ${JSON.stringify(raw)}; using ${DEFAULT_LIMITS[name]}.`)
  }
  if (limits.frameBurst < limits.maxKeysPerSocket) {
    warn(`[live-sync] liveSync.limits.frameBurst (${limits.frameBurst}) is below maxKeysPerSocket (${limits.maxKeysPerSocket}): a tab resubscribing all its keys after a reconnect would be closed for flooding. Raise frameBurst to at least ${limits.maxKeysPerSocket}.`)
  }
  return limits
}

export function resolveSecuritySettings(config: LiveSyncSecurityConfig | undefined, warn: Warn): LiveSyncSecuritySettings {
  return {
    public: flag(config?.public),
    allowedOrigins: parseAllowedOrigins(config?.allowedOrigins, warn),
    trustProxy: flag(config?.trustProxy),
    limits: resolveLimits(config?.limits, warn),
  }
}

function firstValue(header: string | null): string | null {
  if (!header) return null
  const value = header.split(',')[0]!.trim()
  return value === '' ? null : value
}

/**
 * Whether an upgrade may proceed, judged by its `Origin`: absent (not a
 * browser: the authorizer decides), the app's own, or listed. The app's own
 * origin is the `Host` the request came to, with either scheme (a TLS proxy
 * in front of the app is invisible here); with `trustProxy`, it is
 * `X-Forwarded-Proto://X-Forwarded-Host` and the scheme must match too.
 */
export function isOriginAllowed(headers: Headers, settings: Pick<LiveSyncSecuritySettings, 'allowedOrigins' | 'trustProxy'>): boolean {
  const header = headers.get('origin')
  if (header === null) return true
  const origin = normalizeOrigin(header)
  if (!origin) return false
  if (settings.allowedOrigins.has(origin)) return true
  const forwardedHost = settings.trustProxy ? firstValue(headers.get('x-forwarded-host')) : null
  const host = forwardedHost ?? headers.get('host')
  if (!host) return false
  const scheme = settings.trustProxy ? firstValue(headers.get('x-forwarded-proto'))?.toLowerCase() : undefined
  const originScheme = origin.slice(0, origin.indexOf(':'))
  if (scheme && scheme !== originScheme) return false
  // The Host as an origin of the same scheme: lowercased, default port dropped.
  return normalizeOrigin(`${originScheme}://${host}`) === origin
}
