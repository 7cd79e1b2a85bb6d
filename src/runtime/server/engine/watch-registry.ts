/**
 * Finds every model of the app's Sequelize instance that opted in with
 * `liveSync` watch options, like the Elixir original finds every schema
 * deriving `LiveSync.Watch`, and resolves their attribute names to columns.
 */
import type { Model, ModelStatic, Sequelize } from 'sequelize'
import { LiveSyncError } from './errors'
import type { LiveSyncWatchOptions } from './watch-options'

export interface WatchedAttribute {
  /** Attribute name: the key in the model's JSON. */
  attribute: string
  /** Column name in the table. */
  field: string
}

export interface WatchedModel {
  /** The Sequelize model name (what `useLiveSync`'s `model:` names). */
  name: string
  model: ModelStatic<Model>
  /** The table changes come from, schema-qualified: `public.tasks`. */
  table: string
  /**
   * The model reads from another relation than `table` (a view on it): its
   * changes are read back through the model, by id, after each transaction
   * that touched `table`, so rows leave and enter as the view says.
   */
  readBack: boolean
  key: WatchedAttribute
  id: WatchedAttribute[]
  /** The attributes the model's JSON carries, in the model's order. */
  attributes: WatchedAttribute[]
  /**
   * `liveSync.attributes` / `exclude` as a test of a name, or null when
   * neither is set. Rows built through the model (whose JSON may hold more
   * than the stored attributes) are filtered with it.
   */
  exposes: ((name: string) => boolean) | null
  /**
   * The model changes its JSON in ways only Sequelize can reproduce (custom
   * getters, VIRTUAL attributes, its own `toJSON`): rows are then built
   * through `Model.build` instead of the compiled fast path.
   */
  buildThroughModel: boolean
}

interface RawAttribute {
  field?: string
  type?: { key?: string }
  primaryKey?: boolean
}

/** Splits `schema.table` (or `table`, in `defaultSchema`) into a qualified name. */
export function qualifyTable(table: string, defaultSchema = 'public'): string {
  const dot = table.indexOf('.')
  return dot === -1 ? `${defaultSchema}.${table}` : table
}

function modelSchema(model: ModelStatic<Model>): string {
  const options = model.options as { schema?: string }
  return options.schema || 'public'
}

/** The attribute names `findAll` would select, honoring a default scope's `attributes`. */
function scopedAttributeNames(model: ModelStatic<Model>, all: string[]): string[] {
  const scope = (model.options as { defaultScope?: { attributes?: unknown } }).defaultScope
  const attributes = scope?.attributes
  if (Array.isArray(attributes)) {
    const listed = new Set(attributes.filter((a): a is string => typeof a === 'string'))
    return all.filter(name => listed.has(name))
  }
  if (attributes && typeof attributes === 'object') {
    const exclude = new Set(((attributes as { exclude?: unknown[] }).exclude ?? []).filter((a): a is string => typeof a === 'string'))
    return all.filter(name => !exclude.has(name))
  }
  return all
}

function resolveAttribute(model: ModelStatic<Model>, attributes: Record<string, RawAttribute>, name: unknown, option: string): WatchedAttribute {
  if (typeof name !== 'string' || !Object.hasOwn(attributes, name)) {
    const known = Object.keys(attributes).join(', ')
    throw new LiveSyncError('WATCH_OPTIONS', `model ${model.name}: liveSync.${option} names ${JSON.stringify(name)}, which is not an attribute of the model (attributes: ${known}). Use an attribute name, not a column name.`)
  }
  const attribute = attributes[name]!
  if (attribute.type?.key === 'VIRTUAL') {
    throw new LiveSyncError('WATCH_OPTIONS', `model ${model.name}: liveSync.${option} names the VIRTUAL attribute ${name}; it has no column to route or identify rows by.`)
  }
  return { attribute: name, field: attribute.field ?? name }
}

function attributeList(model: ModelStatic<Model>, attributes: Record<string, RawAttribute>, value: unknown, option: string): Set<string> | null {
  if (value === undefined) return null
  if (!Array.isArray(value) || value.some(name => typeof name !== 'string')) {
    throw new LiveSyncError('WATCH_OPTIONS', `model ${model.name}: liveSync.${option} must be an array of attribute names.`)
  }
  for (const name of value as string[]) {
    if (!Object.hasOwn(attributes, name)) {
      throw new LiveSyncError('WATCH_OPTIONS', `model ${model.name}: liveSync.${option} names ${JSON.stringify(name)}, which is not an attribute of the model (attributes: ${Object.keys(attributes).join(', ')}).`)
    }
  }
  return new Set(value as string[])
}

function hasOwnToJSON(model: ModelStatic<Model>): boolean {
  // Compare with the base Model of the app's own copy of Sequelize.
  const base = (model.sequelize?.constructor as { Model?: { prototype: { toJSON: unknown } } } | undefined)?.Model
  return (model.prototype as { toJSON: unknown }).toJSON !== base?.prototype.toJSON
}

/** Reads one model's watch options; throws a `LiveSyncError` naming what is wrong. */
export function describeWatchedModel(model: ModelStatic<Model>, options: LiveSyncWatchOptions): WatchedModel {
  if (!options || typeof options !== 'object') {
    throw new LiveSyncError('WATCH_OPTIONS', `model ${model.name}: liveSync must be an object like { subscriptionKey: 'organizationId' }.`)
  }
  const attributes = model.getAttributes() as Record<string, RawAttribute>
  const key = resolveAttribute(model, attributes, options.subscriptionKey, 'subscriptionKey')
  const idNames = options.id === undefined
    ? Object.keys(attributes).filter(name => attributes[name]!.primaryKey)
    : (Array.isArray(options.id) ? options.id : [options.id])
  if (idNames.length === 0) {
    throw new LiveSyncError('WATCH_OPTIONS', `model ${model.name} has no primary key: set liveSync.id to the attribute that identifies a row.`)
  }
  const id = idNames.map(name => resolveAttribute(model, attributes, name, 'id'))
  if (options.table !== undefined && (typeof options.table !== 'string' || !/^[\w$]+(?:\.[\w$]+)?$/.test(options.table))) {
    throw new LiveSyncError('WATCH_OPTIONS', `model ${model.name}: liveSync.table must be a table name such as 'tasks' or 'app.tasks', got ${JSON.stringify(options.table)}.`)
  }
  const table = qualifyTable(options.table ?? model.tableName, modelSchema(model))
  const relation = qualifyTable(model.tableName, modelSchema(model))

  // What a row may expose: the default scope's attributes, narrowed by liveSync.attributes / exclude.
  const only = attributeList(model, attributes, options.attributes, 'attributes')
  const exclude = attributeList(model, attributes, options.exclude, 'exclude')
  const allowed = (name: string) => (!only || only.has(name)) && !exclude?.has(name)
  for (const each of id) {
    if (!allowed(each.attribute)) {
      throw new LiveSyncError('WATCH_OPTIONS', `model ${model.name}: liveSync.attributes/exclude leave out the id attribute ${each.attribute}, which the browser needs to patch rows; keep it.`)
    }
  }
  const names = Object.keys(attributes)
  const virtual = names.filter(name => attributes[name]!.type?.key === 'VIRTUAL')
  const stored = scopedAttributeNames(model, names.filter(name => attributes[name]!.type?.key !== 'VIRTUAL')).filter(allowed)
  const customGetters = Boolean((model.prototype as { _hasCustomGetters?: number })._hasCustomGetters)
  return {
    name: model.name,
    model,
    table,
    readBack: relation !== table,
    key,
    id,
    attributes: stored.map(name => ({ attribute: name, field: attributes[name]!.field ?? name })),
    exposes: only || exclude ? allowed : null,
    buildThroughModel: customGetters || virtual.length > 0 || hasOwnToJSON(model),
  }
}

/** Every watched model of `sequelize`, in definition order. */
export function discoverWatchedModels(sequelize: Sequelize): WatchedModel[] {
  const watched: WatchedModel[] = []
  for (const model of Object.values(sequelize.models) as ModelStatic<Model>[]) {
    const options = (model.options as { liveSync?: LiveSyncWatchOptions }).liveSync
    if (options !== undefined) watched.push(describeWatchedModel(model, options))
  }
  return watched
}
