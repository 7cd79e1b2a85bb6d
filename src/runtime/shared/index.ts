/**
 * The wire protocol, cursors and patch functions (`#live-sync` in the app),
 * and the row types of models that the app declares for `useLiveSync`.
 */
export * from './lsn'
export * from './protocol'
export * from './patch'
export * from './patch-nested'
export * from './replace-rows'
export type { ServerSnapshot } from './server-snapshot'

/**
 * Row types by model name that the app declares itself, for the refs
 * `useLiveSync` creates (`watch: { tasks: { model: 'Task' } }` without a
 * `ref`); they take precedence over the generated `LiveSyncWatchedModels`
 * (e.g. to add the rows an `include` nests). Declared here, in the module
 * `#live-sync` names, so that the app's declaration merges into it:
 *
 * ```ts
 * // app/live-sync.d.ts
 * declare module '#live-sync' {
 *   interface LiveSyncModels { Project: { id: number, name: string, tasks: LiveSyncModels['Task'][] } }
 * }
 * export {}
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- filled in by the app's declaration merging
export interface LiveSyncModels {}

/**
 * The app's watched models and their rows, generated at build time from the
 * Sequelize module named by `liveSync.sequelize` (`.nuxt/types/live-sync-models.d.ts`).
 * While it is empty (the models could not be loaded), model names are not checked.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- filled in by the generated declaration
export interface LiveSyncWatchedModels {}

/** A model name `useLiveSync` accepts: a watched model's, once they are known; any string before. */
export type LiveSyncModelName = [keyof LiveSyncWatchedModels] extends [never] ? string : keyof LiveSyncWatchedModels & string

/** The row type of model `M`: declared in `LiveSyncModels`, else generated in `LiveSyncWatchedModels`, else a plain record. */
export type LiveSyncModelRow<M> = M extends keyof LiveSyncModels
  ? LiveSyncModels[M]
  : M extends keyof LiveSyncWatchedModels ? LiveSyncWatchedModels[M] : Record<string, unknown>
