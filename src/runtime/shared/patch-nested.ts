/**
 * Rows that nest the rows of an association (`Project.findAll({ include:
 * 'tasks' })`: each project carries its `tasks`; `Task.findAll({ include:
 * 'project' })`: each task carries its `project`) stay live too: a
 * transaction's changes of the nested model are applied to the nested rows.
 * They reach the page because they are routed by the nested model's own
 * subscription key, in the same key space as the parent rows.
 *
 * - has-many (`kind: 'hasMany'`, the default): `foreignKey` is the nested
 *   row's attribute holding its parent's id. An insert joins its parent's
 *   array, an update merges in place (identity kept), a delete or a change of
 *   the foreign key removes it from the old parent and adds it to the new one.
 * - belongs-to (`kind: 'belongsTo'`): `foreignKey` is the parent row's
 *   attribute holding the nested row's id. An update of the nested row is
 *   merged into every parent holding it, a delete makes it `null`; a parent
 *   whose foreign key changes gets the new row when one is known on the page
 *   (another parent holds it, or a change of it arrived), `null` when the key
 *   is NULL, and loses the property (not loaded) otherwise.
 *
 * Lookups are O(1): parents by id (the list's id index), nested rows by id.
 * Framework-free like patch.ts; one level of nesting.
 */
import { assignRow, listIndex, patchList, patchObject, changesForRow, type ListIndex } from './patch'
import { idKey, rowId, type Change, type Row } from './protocol'

export type IncludeKind = 'hasMany' | 'belongsTo'

/** Where the rows of one association sit in a parent row. */
export interface NestedInclude {
  /** The parent row's property holding the nested row(s) (the association's alias). */
  name: string
  /** The nested rows' model. */
  model: string
  /** has-many: the nested row's attribute(s) holding the parent's id; belongs-to: the parent row's attribute(s) holding the nested row's id. */
  foreignKey: string | readonly string[]
  kind: IncludeKind
}

/** What patching one watched value needs to know. */
export interface RowsSpec {
  /** The parent rows' model. */
  model: string
  /** The parent model's id attributes. */
  ids: readonly string[]
  includes: readonly NestedInclude[]
  /** The id attributes of a nested model. */
  idsOf: (model: string) => readonly string[]
}

interface HasManyEntry {
  row: Row
  parent: Row
  /** The parent's id key, to tell whether the parent is still on the page. */
  parentKey: string
}

interface HasManyState {
  kind: 'hasMany'
  byId: Map<string, HasManyEntry>
}

interface BelongsToState {
  kind: 'belongsTo'
  /** Parents by the foreign key they hold. */
  holders: Map<string, Set<Row>>
  fkOf: Map<Row, string | null>
  /** The newest known row of each nested id. */
  targets: Map<string, Row>
}

type NestedState = HasManyState | BelongsToState

interface ListStates {
  /** The list index these states were built from: a rebuilt index means they are stale too. */
  base: ListIndex
  states: NestedState[]
}

// Keyed like the list indexes (the raw array).
const listStates = new WeakMap<object, ListStates>()

/** The id key of the row a foreign key points to, or null when it points nowhere. */
function foreignKeyOf(row: Row, foreignKey: string | readonly string[]): string | null {
  if (typeof foreignKey === 'string') {
    const value = row[foreignKey]
    return value === null || value === undefined ? null : idKey(value)
  }
  const values = foreignKey.map(attribute => row[attribute])
  return values.some(value => value === null || value === undefined) ? null : idKey(values)
}

function isRow(value: unknown): value is Row {
  return !!value && typeof value === 'object' && !Array.isArray(value)
}

function arrayIn(parent: Row, name: string): Row[] {
  if (!Array.isArray(parent[name])) parent[name] = []
  return parent[name] as Row[]
}

function removeFrom(parent: Row, name: string, row: Row): void {
  const list = parent[name]
  if (!Array.isArray(list)) return
  const position = list.indexOf(row)
  if (position >= 0) list.splice(position, 1)
}

function buildState(parents: ReadonlyMap<string, Row>, include: NestedInclude, nestedIds: readonly string[]): NestedState {
  if (include.kind === 'hasMany') {
    const byId = new Map<string, HasManyEntry>()
    for (const [parentKey, parent] of parents) {
      const nested = parent[include.name]
      if (!Array.isArray(nested)) continue
      for (const row of nested as unknown[]) {
        if (isRow(row)) byId.set(idKey(rowId(row, nestedIds)), { row, parent, parentKey })
      }
    }
    return { kind: 'hasMany', byId }
  }
  const state: BelongsToState = { kind: 'belongsTo', holders: new Map(), fkOf: new Map(), targets: new Map() }
  for (const parent of parents.values()) {
    const key = foreignKeyOf(parent, include.foreignKey)
    hold(state, parent, key)
    const nested = parent[include.name]
    if (isRow(nested)) state.targets.set(idKey(rowId(nested, nestedIds)), nested)
  }
  return state
}

function hold(state: BelongsToState, parent: Row, key: string | null): void {
  state.fkOf.set(parent, key)
  if (key === null) return
  let holders = state.holders.get(key)
  if (!holders) state.holders.set(key, (holders = new Set()))
  holders.add(parent)
}

function release(state: BelongsToState, parent: Row): void {
  const key = state.fkOf.get(parent)
  state.fkOf.delete(parent)
  if (key === null || key === undefined) return
  const holders = state.holders.get(key)
  holders?.delete(parent)
  if (holders?.size === 0) state.holders.delete(key)
}

/** A parent row as it enters the page: an empty array for each has-many association it lacks. */
export function withIncludes(row: Row, includes: readonly NestedInclude[]): Row {
  const copy = { ...row }
  for (const include of includes) {
    if (include.kind === 'hasMany' && !Array.isArray(copy[include.name])) copy[include.name] = []
  }
  return copy
}

/** A copy of a row and of the rows nested in it (a snapshot row entering a list). */
export function copyRow(row: Row, includes: readonly NestedInclude[]): Row {
  const copy = { ...row }
  for (const include of includes) {
    const nested = copy[include.name]
    if (include.kind === 'hasMany') copy[include.name] = Array.isArray(nested) ? nested.map(item => (isRow(item) ? { ...item } : item)) : []
    else if (isRow(nested)) copy[include.name] = { ...nested }
  }
  return copy
}

/** Nested rows removed with their parent leave the indexes. */
function forgetParent(state: NestedState, parent: Row, include: NestedInclude, nestedIds: readonly string[]): void {
  if (state.kind === 'belongsTo') return release(state, parent)
  const nested = parent[include.name]
  if (!Array.isArray(nested)) return
  for (const row of nested as unknown[]) {
    if (!isRow(row)) continue
    const id = idKey(rowId(row, nestedIds))
    if (state.byId.get(id)?.parent === parent) state.byId.delete(id)
  }
}

/** A parent inserted or updated: a belongs-to whose foreign key changed points at its new row. */
function followForeignKeys(state: BelongsToState, parents: ReadonlyMap<string, Row>, include: NestedInclude, nestedIds: readonly string[], changes: readonly Change[]): boolean {
  let changed = false
  for (const change of changes) {
    if (change.op === 'delete') continue
    const parent = parents.get(idKey(change.id))
    if (!parent) continue
    const key = foreignKeyOf(parent, include.foreignKey)
    const known = state.fkOf.has(parent)
    if (known && state.fkOf.get(parent) === key) continue
    if (known) release(state, parent)
    hold(state, parent, key)
    const current = parent[include.name]
    if (key === null) {
      // Sequelize gives an included belongs-to with no row as null.
      if (current !== null) {
        parent[include.name] = null
        changed = true
      }
      continue
    }
    const target = state.targets.get(key)
    if (target) {
      if (isRow(current) && idKey(rowId(current, nestedIds)) === key) {
        if (assignRow(current, target)) changed = true
      }
      else {
        parent[include.name] = { ...target }
        changed = true
      }
    }
    else if (include.name in parent) {
      // Not on the page: "not loaded", as Sequelize leaves an association it did not include.
      Reflect.deleteProperty(parent, include.name)
      changed = true
    }
  }
  return changed
}

function applyBelongsTo(state: BelongsToState, include: NestedInclude, nestedIds: readonly string[], changes: readonly Change[]): boolean {
  let changed = false
  for (const change of changes) {
    const id = idKey(change.id)
    const holders = state.holders.get(id)
    if (change.op === 'delete') {
      state.targets.delete(id)
      for (const holder of holders ?? []) {
        if (holder[include.name] !== null) {
          holder[include.name] = null
          changed = true
        }
      }
      continue
    }
    state.targets.set(id, change.row)
    for (const holder of holders ?? []) {
      const current = holder[include.name]
      if (isRow(current) && idKey(rowId(current, nestedIds)) === id) {
        if (assignRow(current, change.row)) changed = true
      }
      else {
        holder[include.name] = { ...change.row }
        changed = true
      }
    }
  }
  return changed
}

function applyHasMany(state: HasManyState, parents: ReadonlyMap<string, Row>, include: NestedInclude, changes: readonly Change[]): boolean {
  let changed = false
  for (const change of changes) {
    const id = idKey(change.id)
    let entry = state.byId.get(id)
    // Its parent left the page (or the list was refilled): forget it.
    if (entry && parents.get(entry.parentKey) !== entry.parent) {
      state.byId.delete(id)
      entry = undefined
    }
    if (change.op === 'delete') {
      if (entry) {
        removeFrom(entry.parent, include.name, entry.row)
        state.byId.delete(id)
        changed = true
      }
      continue
    }
    const parentKey = foreignKeyOf(change.row, include.foreignKey)
    const parent = parentKey === null ? undefined : parents.get(parentKey)
    if (entry && entry.parent === parent) {
      if (assignRow(entry.row, change.row)) changed = true
      continue
    }
    let row: Row = { ...change.row }
    if (entry) {
      // Moved to another parent (or to one not on the page): same object, new place.
      removeFrom(entry.parent, include.name, entry.row)
      assignRow(entry.row, change.row)
      row = entry.row
      state.byId.delete(id)
      changed = true
    }
    if (!parent) continue
    const siblings = arrayIn(parent, include.name)
    siblings.push(row)
    // Read back through the parent so a reactive parent indexes its proxy.
    state.byId.set(id, { row: siblings[siblings.length - 1]!, parent, parentKey: parentKey! })
    changed = true
  }
  return changed
}

/** Applies the nested models' changes and the parents' foreign-key moves; returns the nested changes that applied. */
function applyIncludes(states: NestedState[], parents: ReadonlyMap<string, Row>, byModel: ReadonlyMap<string, readonly Change[]>, own: readonly Change[], spec: RowsSpec): { changed: boolean, nested: Change[] } {
  let changed = false
  const nested: Change[] = []
  spec.includes.forEach((include, i) => {
    const state = states[i]!
    const nestedIds = spec.idsOf(include.model)
    if (state.kind === 'belongsTo' && own.length > 0 && followForeignKeys(state, parents, include, nestedIds, own)) changed = true
    const changes = byModel.get(include.model)
    if (!changes?.length) return
    const applied = state.kind === 'hasMany'
      ? applyHasMany(state, parents, include, changes)
      : applyBelongsTo(state, include, nestedIds, changes)
    if (applied) {
      changed = true
      nested.push(...changes)
    }
  })
  return { changed, nested }
}

function statesFor(indexKey: object, index: ListIndex, spec: RowsSpec): NestedState[] {
  const cached = listStates.get(indexKey)
  if (cached && cached.base === index && cached.states.length === spec.includes.length) return cached.states
  const states = spec.includes.map(include => buildState(index.byId, include, spec.idsOf(include.model)))
  listStates.set(indexKey, { base: index, states })
  return states
}

/**
 * Applies one transaction's changes (by model) to a list whose rows may nest
 * included rows: the list's own model first (a parent inserted in the same
 * transaction is there for its nested rows), then each included model.
 *
 * @returns the changes that changed something (own and nested), or null.
 */
export function patchRows(list: Row[], byModel: ReadonlyMap<string, readonly Change[]>, spec: RowsSpec, indexKey: object = list): Change[] | null {
  const own = byModel.get(spec.model) ?? []
  if (spec.includes.length === 0) {
    return own.length > 0 && patchList(list, own, spec.ids, indexKey) ? [...own] : null
  }
  const index = listIndex(list, spec.ids, indexKey)
  const states = statesFor(indexKey, index, spec)
  // Parents about to be deleted, to drop their nested rows from the indexes once they are gone.
  const doomed: Array<[string, Row]> = []
  for (const change of own) {
    if (change.op !== 'delete') continue
    const id = idKey(change.id)
    const row = index.byId.get(id)
    if (row) doomed.push([id, row])
  }
  let changed = own.length > 0 && patchList(list, own, spec.ids, indexKey, row => withIncludes(row, spec.includes))
  for (const [id, row] of doomed) {
    if (index.byId.get(id) === row) continue // written again in the same transaction
    spec.includes.forEach((include, i) => forgetParent(states[i]!, row, include, spec.idsOf(include.model)))
  }
  const nested = applyIncludes(states, index.byId, byModel, own, spec)
  if (nested.changed) changed = true
  return changed ? [...own, ...nested.nested] : null
}

/**
 * The single-row counterpart of `patchRows`: updates of the row merge into
 * it, a delete gives `null`, and its nested rows follow their changes.
 */
export function patchRow(current: Row | null | undefined, byModel: ReadonlyMap<string, readonly Change[]>, spec: RowsSpec): { value: Row | null | undefined, ops: Change[] | null } {
  if (!isRow(current)) return { value: current, ops: null }
  const own = changesForRow(byModel.get(spec.model) ?? [], current, spec.ids)
  // Built before the merge: a belongs-to must see the foreign key the row had.
  const parents = new Map([[idKey(rowId(current, spec.ids)), current]])
  const states = spec.includes.map(include => buildState(parents, include, spec.idsOf(include.model)))
  const result = patchObject(current, own, spec.ids)
  if (result.value === null) return { value: null, ops: own }
  const nested = spec.includes.length > 0 ? applyIncludes(states, parents, byModel, own, spec) : { changed: false, nested: [] }
  return result.changed || nested.changed ? { value: current, ops: [...own, ...nested.nested] } : { value: current, ops: null }
}
