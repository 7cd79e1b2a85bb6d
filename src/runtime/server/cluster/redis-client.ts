/**
 * The Redis client of cluster mode: ioredis, an optional peer dependency
 * loaded only when `liveSync.redis` is set, so single-instance apps need
 * not install it. Typed by the few methods live sync uses, which ioredis 5
 * and 6 share.
 */
import { LiveSyncError } from '../engine/errors'
import type { LuaScript } from './redis-layout'

type Argument = string | Buffer | number

/** The part of an ioredis connection live sync uses. */
export interface RedisConnection {
  readonly status: string
  connect: () => Promise<void>
  quit: () => Promise<unknown>
  disconnect: () => void
  on: (event: string, listener: (...args: never[]) => void) => unknown
  removeAllListeners: (event?: string) => unknown
  evalsha: (sha: string, keys: number, ...args: Argument[]) => Promise<unknown>
  eval: (script: string, keys: number, ...args: Argument[]) => Promise<unknown>
  script: (subcommand: 'LOAD', script: string) => Promise<unknown>
  subscribe: (...channels: string[]) => Promise<unknown>
  unsubscribe: (...channels: string[]) => Promise<unknown>
  hmget: (key: string, ...fields: string[]) => Promise<Array<string | null>>
}

type RedisConstructor = new (url: string, options: Record<string, unknown>) => RedisConnection

let loaded: Promise<RedisConstructor> | null = null

/** ioredis's client class; a missing package is a `LiveSyncError` that says how to install it. */
export function loadRedis(): Promise<RedisConstructor> {
  loaded ??= import('ioredis').then(
    mod => ((mod as { Redis?: unknown }).Redis ?? (mod as { default?: unknown }).default) as RedisConstructor,
    (error: Error) => {
      loaded = null
      throw new LiveSyncError('REDIS', `liveSync.redis (NUXT_LIVE_SYNC_REDIS_URL) is set, but the Redis client could not be loaded (${error.message}). Install it in the app:   npm install ioredis@6.0.0   Live updates are off; pages are still served.`, { cause: error })
    },
  )
  return loaded
}

/**
 * Options for every connection: a command fails at once while Redis is
 * unreachable or when its connection drops (never queued and sent again
 * later, out of order); reconnects are quick, so a restarted Redis is
 * noticed within about a second.
 */
export function connectionOptions(name: string): Record<string, unknown> {
  return {
    connectionName: name,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    autoResubscribe: false,
    connectTimeout: 5000,
    retryStrategy: (times: number) => Math.min(100 * times, 1000),
  }
}

/** The URL for messages: no password. */
export function describeRedis(url: string): string {
  try {
    const parsed = new URL(url)
    parsed.password = ''
    parsed.username = ''
    return parsed.toString()
  }
  catch {
    return 'the configured Redis'
  }
}

/**
 * Runs a script by its SHA1, sending its source only when Redis does not
 * have it. Only for calls whose order does not matter (a reload could let
 * a later call overtake this one): publishing loads its scripts first.
 */
export async function runScript(redis: RedisConnection, script: LuaScript, keys: string[], args: Argument[]): Promise<unknown> {
  try {
    return await redis.evalsha(script.sha, keys.length, ...keys, ...args)
  }
  catch (error) {
    if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error
    return redis.eval(script.source, keys.length, ...keys, ...args)
  }
}
