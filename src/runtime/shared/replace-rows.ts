/**
 * Replacing what a page holds with a snapshot of the key's rows, in place:
 * rows whose id is still there keep their object identity (and their place),
 * changed attributes are merged into them, rows that are gone are removed,
 * new rows are appended. Nested rows (see patch-nested.ts) are replaced the
 * same way inside each kept row.
 */
import { assignRow, forgetListIndex, listIndex, removeRows } from './patch'
import { copyRow, type NestedInclude, type RowsSpec } from './patch-nested'
import { idKey, rowId, type Change, type Row } from './protocol'

function isRow(value: unknown): value is Row {
  return !!value && typeof value === 'object' && !Array.isArray(value)
}

/** Merges `source` into `target` (identity kept), nested rows included; returns whether anything changed. */
function mergeRow(target: Row, source: Row, spec: RowsSpec): boolean {
  const nestedNames = new Set(spec.includes.map(include => include.name))
  let changed = false
  for (const key in source) {
    if (nestedNames.has(key) || target[key] === source[key]) continue
    target[key] = source[key]
    changed = true
  }
  for (const include of spec.includes) {
    if (mergeNested(target, source, include, spec)) changed = true
  }
  return changed
}

function mergeNested(target: Row, source: Row, include: NestedInclude, spec: RowsSpec): boolean {
  const name = include.name
  const incoming = source[name]
  const current = target[name]
  if (include.kind === 'hasMany') {
    const rows = Array.isArray(incoming) ? incoming.filter(isRow) : []
    if (!Array.isArray(current)) {
      target[name] = rows.map(row => ({ ...row }))
      return true
    }
    return replaceList(current as Row[], rows, { model: include.model, ids: spec.idsOf(include.model), includes: [], idsOf: spec.idsOf }).length > 0
  }
  if (!isRow(incoming)) {
    if (current === (incoming ?? null)) return false
    target[name] = incoming ?? null
    return true
  }
  const ids = spec.idsOf(include.model)
  if (isRow(current) && idKey(rowId(current, ids)) === idKey(rowId(incoming, ids))) return assignRow(current, incoming)
  target[name] = { ...incoming }
  return true
}

/**
 * Makes `list` hold exactly `rows` (by id), in place.
 *
 * @param list the rows a page holds, replaced in place
 * @param rows the snapshot's rows
 * @param spec the model, its id attributes and nested associations
 * @param indexKey the object the list's id index is stored under (the raw array of a reactive list)
 * @returns the differences as changes (insert, update, delete), for `sync`.
 */
export function replaceList(list: Row[], rows: readonly Row[], spec: RowsSpec, indexKey: object = list): Change[] {
  // Whatever the app did to the list, start from what it holds now.
  forgetListIndex(indexKey)
  const index = listIndex(list, spec.ids, indexKey)
  const kept = new Set<Row>()
  const ops: Change[] = []
  const appended: Row[] = []
  for (const row of rows) {
    const id = rowId(row, spec.ids)
    const existing = index.byId.get(idKey(id))
    if (existing && !kept.has(existing)) {
      kept.add(existing)
      if (mergeRow(existing, row, spec)) ops.push({ op: 'update', model: spec.model, id, row })
    }
    else if (!existing) {
      appended.push(copyRow(row, spec.includes))
      ops.push({ op: 'insert', model: spec.model, id, row })
    }
  }
  const removed = new Set<Row>()
  for (const row of list) {
    if (kept.has(row)) continue
    removed.add(row)
    if (isRow(row)) ops.push({ op: 'delete', model: spec.model, id: rowId(row, spec.ids), row })
  }
  if (removed.size > 0) removeRows(list, removed)
  if (appended.length > 0) list.push(...appended)
  forgetListIndex(indexKey)
  return ops
}

/**
 * Replaces a single row from a snapshot of its key: merged (identity kept)
 * when the snapshot has its id, `null` when the row is gone.
 */
export function replaceObject(current: Row | null | undefined, rows: readonly Row[], spec: RowsSpec): { value: Row | null | undefined, ops: Change[] } {
  if (!isRow(current)) return { value: current, ops: [] }
  const id = idKey(rowId(current, spec.ids))
  const row = rows.find(candidate => idKey(rowId(candidate, spec.ids)) === id)
  if (!row) return { value: null, ops: [{ op: 'delete', model: spec.model, id: rowId(current, spec.ids), row: current }] }
  return { value: current, ops: mergeRow(current, row, spec) ? [{ op: 'update', model: spec.model, id: rowId(row, spec.ids), row }] : [] }
}
