/**
 * Errors nuxt-live-sync reports. Every message starts with `[live-sync]` and
 * says what to do about it; `code` lets callers and tests tell them apart.
 */
export type LiveSyncErrorCode
  = | 'CONFIG'
    | 'WATCH_OPTIONS'
    | 'CONNECT'
    | 'WAL_LEVEL'
    | 'NO_PUBLICATION'
    | 'NO_PRIVILEGE'
    | 'NO_SLOTS'
    | 'REPLICATION'
    /** A snapshot request names a model or association that cannot be read. */
    | 'SNAPSHOT'
    /** Cluster mode: Redis is unreachable, or its client is missing. */
    | 'REDIS'

export class LiveSyncError extends Error {
  constructor(
    readonly code: LiveSyncErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message.startsWith('[live-sync]') ? message : `[live-sync] ${message}`, options)
    this.name = 'LiveSyncError'
  }
}

/**
 * Where the engine writes what it has to say: consola, tagged `live-sync`,
 * by default (see logger.ts); tests inject their own.
 */
export interface LiveSyncLogger {
  info: (message: string) => void
  warn: (message: string) => void
  error: (message: string) => void
  /** Routing decisions for the keys of `debugKeys` (optional: a logger without it drops them). */
  debug?: (message: string) => void
}
