/**
 * The log of live sync: Nuxt's consola (what Nitro logs through), tagged
 * `live-sync`, so lines read `[live-sync] …` in a plain log and carry the tag
 * in a terminal. Messages keep their `[live-sync]` prefix elsewhere (errors
 * thrown, error frames); the tag replaces it here.
 */
import { consola, LogLevels } from 'consola'
import type { LiveSyncLogger } from './errors'

const PREFIX = '[live-sync] '

function untagged(message: string): string {
  return message.startsWith(PREFIX) ? message.slice(PREFIX.length) : message
}

/**
 * A logger writing to consola with the `live-sync` tag. With `debug` its
 * level is raised to show debug lines (the routing of `liveSync.debugKeys`),
 * whatever `CONSOLA_LEVEL` says: asking for a key's routing is asking to see it.
 */
export function createLiveSyncLogger(options: { debug?: boolean } = {}): LiveSyncLogger {
  const tagged = consola.withTag('live-sync')
  if (options.debug) tagged.level = Math.max(tagged.level, LogLevels.debug)
  return {
    info: message => tagged.info(untagged(message)),
    warn: message => tagged.warn(untagged(message)),
    error: message => tagged.error(untagged(message)),
    debug: message => tagged.debug(untagged(message)),
  }
}

let shared: LiveSyncLogger | null = null

/** The server's live sync logger (created on first use). */
export function liveSyncLogger(): LiveSyncLogger {
  return (shared ??= createLiveSyncLogger())
}
