/**
 * Applying a transaction's changes to the values a page holds: a list of rows
 * or a single row. Framework-free: the Vue binding decides whether it hands
 * over a reactive proxy (deep refs) or a raw value (shallow refs) and
 * triggers the ref afterwards.
 *
 * Rows are found through an id index kept beside each list (O(1) per change,
 * never a scan per event), and updated rows keep their object identity.
 */
import { idKey, rowId, type Change, type Row } from './protocol'

export interface ListIndex {
  /** The list's rows by `idKey` of their id (read through the list: reactive proxies for a reactive list). */
  byId: Map<string, Row>
  /** The list's length, first and last row when the index was last in step with it. */
  length: number
  first: unknown
  last: unknown
}

// Keyed by the raw array so a reactive proxy and its target share one index.
const listIndexes = new WeakMap<object, ListIndex>()

function buildIndex(list: readonly Row[], idAttributes: readonly string[]): ListIndex {
  const byId = new Map<string, Row>()
  for (const row of list) {
    if (row && typeof row === 'object') byId.set(idKey(rowId(row, idAttributes)), row)
  }
  return { byId, length: list.length, first: list[0], last: list[list.length - 1] }
}

/**
 * The id index of `list`, rebuilt when the list changed behind our back (the
 * app pushed, spliced or refilled it). Length alone misses a splice plus a
 * push, or contents replaced by as many fresh rows, so the first and last
 * rows are compared too (still O(1)). A change in the middle that keeps all
 * three needs `forgetListIndex`.
 */
function indexOf(list: Row[], idAttributes: readonly string[], indexKey: object): ListIndex {
  let index = listIndexes.get(indexKey)
  if (!index || index.length !== list.length || index.first !== list[0] || index.last !== list[list.length - 1]) {
    index = buildIndex(list, idAttributes)
    listIndexes.set(indexKey, index)
  }
  return index
}

/**
 * The id index of `list` (built or rebuilt as needed). The same object is
 * returned until the index has to be rebuilt, so other indexes derived from
 * it (nested rows) can tell when they are stale.
 */
export function listIndex(list: Row[], idAttributes: readonly string[], indexKey: object = list): ListIndex {
  return indexOf(list, idAttributes, indexKey)
}

/** Forget the index of a list (after the app replaced its contents wholesale). */
export function forgetListIndex(indexKey: object): void {
  listIndexes.delete(indexKey)
}

/**
 * Copies the changed attributes of `source` onto `target`, keeping `target`'s
 * identity. Returns whether any attribute changed.
 */
export function assignRow(target: Row, source: Row): boolean {
  let changed = false
  for (const key in source) {
    if (target[key] !== source[key]) {
      target[key] = source[key]
      changed = true
    }
  }
  return changed
}

/**
 * Applies `changes` (already filtered to one model) to `list` in place:
 * inserts append, updates merge into the existing object (or append when the
 * row moved into this list), deletes remove. Replaying a change twice is
 * harmless, which is what makes resuming from an older cursor safe.
 * Inserted rows are copies: one tx frame is handed to every subscriber of a
 * key, and two lists must not share (and mutate) one row object.
 *
 * @param list the rows, patched in place
 * @param changes the transaction's changes of the list's model
 * @param idAttributes the attributes that make up a row's id
 * @param indexKey the object the id index is stored under; pass the raw array
 *   when `list` is a reactive proxy of it.
 * @param fresh makes the object an inserted row becomes (a copy of the change's row)
 * @returns whether the list changed (a replay that changes nothing gives false).
 */
export function patchList(list: Row[], changes: readonly Change[], idAttributes: readonly string[], indexKey: object = list, fresh: (row: Row) => Row = copyOf): boolean {
  const index = indexOf(list, idAttributes, indexKey)
  let removed: Map<string, Row> | null = null
  let changed = false
  for (const change of changes) {
    const id = idKey(change.id)
    if (change.op === 'delete') {
      const row = index.byId.get(id)
      if (row) {
        index.byId.delete(id)
        ;(removed ??= new Map()).set(id, row)
      }
      continue
    }
    const existing = index.byId.get(id) ?? takeBack(removed, id, index)
    if (existing) {
      if (assignRow(existing, change.row)) changed = true
    }
    else {
      list.push(fresh(change.row))
      // Read back through `list` so a reactive list indexes its proxy of the row.
      index.byId.set(id, list[list.length - 1]!)
      changed = true
    }
  }
  if (removed?.size) {
    removeRows(list, new Set(removed.values()))
    changed = true
  }
  index.length = list.length
  index.first = list[0]
  index.last = list[list.length - 1]
  return changed
}

const copyOf = (row: Row): Row => ({ ...row })

/** A row deleted earlier in the same batch and written again: keep its place and identity. */
function takeBack(removed: Map<string, Row> | null, id: string, index: ListIndex): Row | undefined {
  const row = removed?.get(id)
  if (row) {
    removed!.delete(id)
    index.byId.set(id, row)
  }
  return row
}

/** Removes the given rows in one pass (one splice when it is a single row). */
export function removeRows(list: Row[], rows: Set<Row>): void {
  if (rows.size === 1) {
    const position = list.indexOf(rows.values().next().value!)
    if (position >= 0) list.splice(position, 1)
    return
  }
  let write = 0
  for (let read = 0; read < list.length; read++) {
    const row = list[read]!
    if (rows.has(row)) continue
    if (write !== read) list[write] = row
    write++
  }
  list.length = write
}

/**
 * Applies `changes` (already filtered to one model) to a single row:
 * updates of the same id merge into it, a delete of it gives `null`.
 *
 * @returns the new value (the same object when merged) and whether it changed.
 */
export function patchObject(current: Row | null | undefined, changes: readonly Change[], idAttributes: readonly string[]): { value: Row | null | undefined, changed: boolean } {
  if (!current || typeof current !== 'object') return { value: current, changed: false }
  const id = idKey(rowId(current, idAttributes))
  // A delete followed by an insert of the same id in one batch leaves the row
  // (merged, same object), as patchList does; so a delete only marks it gone.
  let deleted = false
  let merged = false
  for (const change of changes) {
    if (idKey(change.id) !== id) continue
    if (change.op === 'delete') deleted = true
    else {
      if (assignRow(current, change.row)) merged = true
      deleted = false
    }
  }
  return { value: deleted ? null : current, changed: deleted || merged }
}

/** The changes of `changes` that concern a single row with the given id. */
export function changesForRow(changes: readonly Change[], row: Row | null | undefined, idAttributes: readonly string[]): Change[] {
  if (!row || typeof row !== 'object') return []
  const id = idKey(rowId(row, idAttributes))
  return changes.filter(change => idKey(change.id) === id)
}
