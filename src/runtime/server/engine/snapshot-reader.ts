/**
 * Snapshots: the current rows of one key, read through the app's Sequelize
 * models exactly as the app would read them (`findAll` with the default
 * scope, each row's `toJSON`), so they have the shape of live rows. Keyset
 * pages by the id attributes keep the work per query bounded for large keys.
 * Nested rows (`include`) are read through the model's own associations and
 * limited to the same key: a snapshot shows what the key's changes would.
 */
import { Op, type Association, type FindOptions, type Includeable, type Model, type Order, type WhereOptions } from 'sequelize'
import type { KeyValue, ModelMeta, Row, SnapshotModel } from '../../shared/protocol'
import { LiveSyncError } from './errors'
import { toJSONValue } from './row-shaper'
import type { WatchedModel } from './watch-registry'

export interface SnapshotInclude {
  /** The association's alias: the property of each row holding the nested rows. */
  name: string
  association: Association
  target: WatchedModel
}

/** A requested model, checked against the watched models and their associations. */
export interface ResolvedSnapshotModel {
  watch: WatchedModel
  include: SnapshotInclude[]
}

/**
 * Checks a snapshot request's models; throws a `LiveSyncError` (code
 * SNAPSHOT) that says what is wrong and how to fix it.
 */
export function resolveSnapshotModels(byName: ReadonlyMap<string, WatchedModel>, models: readonly SnapshotModel[]): ResolvedSnapshotModel[] {
  return models.map(({ model, include }) => {
    const watch = byName.get(model)
    if (!watch) {
      throw new LiveSyncError('SNAPSHOT', `model ${JSON.stringify(model)} is not watched (watched: ${[...byName.keys()].join(', ') || 'none'}); give it liveSync options to read its rows.`)
    }
    const associations = watch.model.associations as Record<string, Association>
    return {
      watch,
      include: (include ?? []).map((name) => {
        const association = Object.hasOwn(associations, name) ? associations[name] : undefined
        if (!association) {
          throw new LiveSyncError('SNAPSHOT', `model ${model} has no association ${JSON.stringify(name)} (it has: ${Object.keys(associations).join(', ') || 'none'}). Define it with the include's name as alias, e.g. ${model}.hasMany(Task, { as: '${name}', foreignKey: 'projectId' }).`)
        }
        const target = [...byName.values()].find(candidate => candidate.model === association.target)
        if (!target) {
          throw new LiveSyncError('SNAPSHOT', `${model}.${name} leads to model ${association.target.name}, which is not watched: give it liveSync options so its rows can be read and kept live.`)
        }
        return { name, association, target }
      }),
    }
  })
}

/** The id attributes of a snapshot's models, nested ones included. */
export function snapshotModelMeta(parts: readonly ResolvedSnapshotModel[]): Record<string, ModelMeta> {
  const meta: Record<string, ModelMeta> = {}
  for (const part of parts) {
    for (const watch of [part.watch, ...part.include.map(include => include.target)]) meta[watch.name] = { id: watch.id.map(id => id.attribute) }
  }
  return meta
}

function isRow(value: unknown): value is Row {
  return !!value && typeof value === 'object' && !Array.isArray(value)
}

/** A row's JSON with only what live rows of `watch` expose (`liveSync.attributes` / `exclude`), nested rows likewise. */
function exposed(watch: WatchedModel, row: Row, nested: readonly SnapshotInclude[] = []): Row {
  const out: Row = {}
  for (const [name, value] of Object.entries(row)) {
    const include = nested.find(each => each.name === name)
    if (include) out[name] = Array.isArray(value) ? value.map(item => (isRow(item) ? exposed(include.target, item) : item)) : isRow(value) ? exposed(include.target, value) : value
    else if (!watch.exposes || watch.exposes(name)) out[name] = value
  }
  return out
}

/** An instance as a live row of `watch` shows it: its JSON, without what liveSync options leave out. */
export function liveJSON(watch: WatchedModel, instance: Model, nested: readonly SnapshotInclude[] = []): Row {
  const row = JSON.parse(JSON.stringify(instance)) as Row
  return watch.exposes || nested.some(include => include.target.exposes) ? exposed(watch, row, nested) : row
}

/**
 * Whether `findAll({ raw: true })` gives a model's JSON (after `toJSONValue`):
 * no getters, VIRTUAL attributes or own `toJSON` to run, nothing nested. Raw
 * rows skip building an instance per row, the costliest part of a read.
 */
export function readsRaw(watch: WatchedModel, nested: readonly SnapshotInclude[] = []): boolean {
  return !watch.buildThroughModel && nested.length === 0
}

/** A raw row (attribute names, values as Sequelize parsed them) as the model's JSON. */
export function rawLiveJSON(watch: WatchedModel, raw: Record<string, unknown>): Row {
  const row: Row = {}
  for (const [name, value] of Object.entries(raw)) {
    if (value !== undefined && (!watch.exposes || watch.exposes(name))) row[name] = toJSONValue(value)
  }
  return row
}

/** Rows after `values` in the order of `attributes`: (a > x) or (a = x and b > y) … */
function after(attributes: string[], values: unknown[]): WhereOptions {
  const branches = attributes.map((attribute, i) => ({
    ...Object.fromEntries(attributes.slice(0, i).map((previous, j) => [previous, values[j]])),
    [attribute]: { [Op.gt]: values[i] },
  }))
  return branches.length === 1 ? branches[0]! : { [Op.or]: branches }
}

/** A value the key column cannot hold ('abc' for an integer key): such a key has no rows. */
function isInvalidValue(error: unknown): boolean {
  const code = (error as { original?: { code?: unknown } })?.original?.code
  return typeof code === 'string' && code.startsWith('22')
}

/**
 * Reads the key's rows of one model page by page, in id order, handing each
 * page (rows as their JSON) to `onPage` before reading the next.
 *
 * @returns the number of rows read
 */
export async function readKeyPages(part: ResolvedSnapshotModel, key: KeyValue, pageSize: number, onPage: (rows: Row[]) => void | Promise<void>, aborted: () => boolean = () => false): Promise<number> {
  const { watch } = part
  const ids = watch.id.map(id => id.attribute)
  const ofKey: WhereOptions = { [watch.key.attribute]: key }
  const order: Order = ids.map(id => [id, 'ASC'])
  for (const include of part.include) {
    if (include.association.associationType !== 'HasMany') continue
    for (const id of include.target.id) order.push([{ model: include.target.model, as: include.name }, id.attribute, 'ASC'])
  }
  const include: Includeable[] = part.include.map(nested => ({
    association: nested.association,
    // Nested rows of another key would not be kept live (and may not be the reader's to see).
    where: { [nested.target.key.attribute]: key },
    required: false,
  }))
  const raw = readsRaw(watch, part.include)
  let last: unknown[] | null = null
  let total = 0
  while (!aborted()) {
    const options: FindOptions = { where: last ? { [Op.and]: [ofKey, after(ids, last)] } : ofKey, order, limit: pageSize, include, raw }
    let found: Array<Model | Record<string, unknown>>
    try {
      found = await watch.model.findAll(options)
    }
    catch (error) {
      if (isInvalidValue(error)) return total
      throw error
    }
    if (found.length === 0) break
    total += found.length
    // Raw rows when they are the model's JSON already: no instance per row.
    const values = (item: Model | Record<string, unknown>) => (raw ? item as Record<string, unknown> : (item as Model).dataValues as Record<string, unknown>)
    const lastValues = values(found[found.length - 1]!)
    last = ids.map(id => lastValues[id])
    await onPage(found.map(item => (raw ? rawLiveJSON(watch, item as Record<string, unknown>) : liveJSON(watch, item as Model, part.include))))
    if (found.length < pageSize) break
  }
  return total
}
