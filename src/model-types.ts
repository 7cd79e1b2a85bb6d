/**
 * Build time: which models the app watches, for the declaration that checks
 * `useLiveSync`'s model names. The module named by `liveSync.sequelize` is
 * imported with jiti (with `NUXT_LIVE_SYNC_TYPES=1` in the environment, so
 * an app that builds its Sequelize instance only when a database is
 * configured can define its models anyway); Sequelize connects only at a
 * first query, and none is made. What the dev server discovers at run time
 * is cached in `.nuxt/cache` and used when the import gives no models.
 */
import { existsSync, readFileSync } from 'node:fs'
import { createJiti } from 'jiti'
import type { Sequelize } from 'sequelize'
import { discoverWatchedModels } from './runtime/server/engine/watch-registry'
import { describeModelTypes, type ModelTypeInfo } from './runtime/server/model-declarations'

export interface LoadedModelTypes {
  models: ModelTypeInfo[] | null
  /** Why there are none. */
  problem?: string
  /** When they were read (ms since the epoch). */
  at: number
}

/** What the dev server writes once its engine discovered the models. */
export interface CachedModelTypes {
  writtenAt: number
  models: ModelTypeInfo[]
}

function isSequelize(value: unknown): value is Sequelize {
  return !!value && typeof (value as Sequelize).getDialect === 'function' && typeof (value as Sequelize).models === 'object'
}

/** Imports the app's Sequelize module and describes its watched models (never throws). */
export async function loadModelTypes(file: string, options: { rootDir: string, alias: Record<string, string> }): Promise<LoadedModelTypes> {
  const at = Date.now()
  const previous = process.env.NUXT_LIVE_SYNC_TYPES
  process.env.NUXT_LIVE_SYNC_TYPES = '1'
  let instance: unknown
  try {
    const jiti = createJiti(options.rootDir, { alias: options.alias, interopDefault: false })
    const mod = await jiti.import<Record<string, unknown>>(file)
    instance = mod.sequelize ?? mod.default
    if (typeof instance === 'function') instance = await (instance as () => unknown)()
  }
  catch (error) {
    return { models: null, problem: `importing it failed: ${(error as Error)?.message ?? error}`, at }
  }
  finally {
    if (previous === undefined) delete process.env.NUXT_LIVE_SYNC_TYPES
    else process.env.NUXT_LIVE_SYNC_TYPES = previous
  }
  if (!isSequelize(instance)) return { models: null, problem: 'it exported no Sequelize instance', at }
  try {
    return { models: describeModelTypes(discoverWatchedModels(instance)), at }
  }
  catch (error) {
    return { models: null, problem: (error as Error)?.message ?? String(error), at }
  }
  finally {
    // Nothing connected; this only releases what the instance may have opened at import.
    await instance.close().catch(() => {})
  }
}

/** The models the dev server discovered last, or null. */
export function readCachedModelTypes(file: string): CachedModelTypes | null {
  if (!existsSync(file)) return null
  try {
    const cached = JSON.parse(readFileSync(file, 'utf8')) as CachedModelTypes
    return Array.isArray(cached?.models) && typeof cached.writtenAt === 'number' ? cached : null
  }
  catch {
    return null
  }
}
