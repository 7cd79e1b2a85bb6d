/**
 * The watch options a Sequelize model opts in with (the `@derive LiveSync.Watch`
 * of the Elixir original), and their type on Sequelize's model options.
 *
 * ```ts
 * Task.init(attributes, { sequelize, tableName: 'visible_tasks',
 *   liveSync: { subscriptionKey: 'organizationId', id: 'id', table: 'tasks' } })
 * ```
 */
export interface LiveSyncWatchOptions {
  /** Attribute whose value routes a row to subscribers (`useLiveSync(key)`). */
  subscriptionKey: string
  /** Attribute(s) identifying a row; defaults to the model's primary key. */
  id?: string | string[]
  /**
   * The table whose changes feed this model, when the model reads from a view
   * (`'tasks'` or `'app.tasks'`). Defaults to the model's own table.
   */
  table?: string
  /**
   * Only these attributes go out in live rows (applied after the model's
   * `defaultScope`, which already limits them). Must keep the id attributes.
   */
  attributes?: string[]
  /** Attributes never sent in live rows, on top of what the `defaultScope` excludes. */
  exclude?: string[]
}

declare module 'sequelize/types/model' {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- must repeat Sequelize's type parameters
  interface ModelOptions<M extends import('sequelize').Model = import('sequelize').Model> {
    /** Keep rows of this model live in the browser through nuxt-live-sync. */
    liveSync?: LiveSyncWatchOptions
  }
}
