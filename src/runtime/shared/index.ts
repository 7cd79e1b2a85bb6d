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
 * Row types by model name, for the refs `useLiveSync` creates itself
 * (`watch: { tasks: { model: 'Task' } }` without a `ref`). Empty until the
 * app declares its models (declared here, in the module `#live-sync` names,
 * so that the app's declaration merges into it):
 *
 * ```ts
 * // app/live-sync.d.ts
 * declare module '#live-sync' {
 *   interface LiveSyncModels { Task: { id: number, title: string, done: boolean } }
 * }
 * export {}
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- filled in by the app's declaration merging
export interface LiveSyncModels {}

/** The row type of model `M`: declared in `LiveSyncModels`, or a plain record. */
export type LiveSyncModelRow<M> = M extends keyof LiveSyncModels ? LiveSyncModels[M] : Record<string, unknown>
