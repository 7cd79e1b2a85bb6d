/**
 * Turns a decoded tuple into the model's JSON: attribute names (not column
 * names), only the model's attributes, and values equal to
 * `JSON.parse(JSON.stringify(instance))` of the same row loaded through
 * Sequelize. Values are parsed by the very parsers Sequelize's own connection
 * uses (per type OID), then converted the way `JSON.stringify` would.
 *
 * A shaper is compiled once per (model, relation) and reused for every row.
 */
import type { Model } from 'sequelize'
import { keyString, rowId, type Row } from '../../shared/protocol'
import type { RawTuple, RelationMessage } from './pgoutput-decoder'
import type { WatchedModel } from './watch-registry'

export type TypeParser = (text: string) => unknown
export type ParserLookup = (typeOid: number) => TypeParser

/** A value as `JSON.parse(JSON.stringify(value))` would give it back. */
export function toJSONValue(value: unknown): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value
    case 'number':
      return Number.isFinite(value) ? value : null
    case 'undefined':
    case 'function':
    case 'symbol':
      return null
    case 'bigint':
      return value.toString()
  }
  if (value === null) return null
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString()
  if (Array.isArray(value)) return value.map(toJSONValue)
  const withToJSON = value as { toJSON?: () => unknown }
  if (typeof withToJSON.toJSON === 'function') return toJSONValue(withToJSON.toJSON())
  const out: Record<string, unknown> = {}
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    if (item !== undefined && typeof item !== 'function' && typeof item !== 'symbol') out[key] = toJSONValue(item)
  }
  return out
}

interface Column {
  attribute: string
  index: number
  parse: TypeParser
  /** text → the value as it appears in the model's JSON. */
  json: (text: string) => unknown
}

const TIMESTAMPTZ_OID = 1184
// What the replication session (TimeZone=UTC) prints: 2026-11-25 14:11:30.123456+00
const UTC_TIMESTAMP = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?\+00$/

/**
 * timestamptz straight from text to the ISO string `JSON.stringify(date)`
 * gives, without building a Date (the costliest step of shaping a row).
 * Anything unusual (BC, infinity, a 5-digit year) is not matched.
 */
export function utcTimestampToISO(text: string): string | undefined {
  if (!UTC_TIMESTAMP.test(text)) return undefined
  const dot = text.indexOf('.', 19)
  const millis = dot === -1 ? '000' : text.slice(dot + 1, text.length - 3).padEnd(3, '0').slice(0, 3)
  return `${text.slice(0, 10)}T${text.slice(11, 19)}.${millis}Z`
}

/**
 * The column's text → JSON converter. The generic one runs the type's
 * Sequelize parser and converts like JSON.stringify. A faster one is used
 * only after it agreed with the generic one on the column's first values,
 * so an app that installed its own pg type parser still gets its own shape.
 */
function converter(typeOid: number, parse: TypeParser): (text: string) => unknown {
  const generic = (text: string): unknown => toJSONValue(parse(text))
  if (typeOid !== TIMESTAMPTZ_OID) return generic
  let verifications = 32
  let trusted = true
  return (text: string): unknown => {
    if (!trusted) return generic(text)
    const fast = utcTimestampToISO(text)
    if (fast === undefined) return generic(text)
    if (verifications > 0) {
      verifications--
      const expected = generic(text)
      if (expected !== fast) {
        trusted = false
        return expected
      }
    }
    return fast
  }
}

export interface CompiledShaper {
  watch: WatchedModel
  /** Attributes of the model that the table has no column for (left out of rows). */
  missing: string[]
  /**
   * The model's JSON for `tuple`. A TOASTed value the update did not send is
   * taken from `fallback` (the old row); without one the attribute is left
   * out, so merging the row keeps what the client has.
   */
  row: (tuple: RawTuple, fallback: RawTuple | null) => Row
  /** The routing key (`keyString`) of a tuple, or null when it has no key. */
  key: (tuple: RawTuple, fallback: RawTuple | null) => string | null
  /** The routing key of a row this shaper built from `tuple` (cheaper than `key`). */
  rowKey: (row: Row, tuple: RawTuple, fallback: RawTuple | null) => string | null
  id: (row: Row) => unknown
  /** The id straight from a tuple's id columns, without shaping the whole row. */
  tupleId: (tuple: RawTuple) => unknown
}

function valueAt(tuple: RawTuple, fallback: RawTuple | null, index: number): string | null | undefined {
  const value = tuple[index]
  return value === undefined && fallback ? fallback[index] : value
}

/**
 * A function that builds a row as one object literal (one hidden class,
 * no per-property transitions): `{ "id": c0(t[3]), … }`. Only for tuples
 * without unchanged-TOAST gaps.
 */
function compileLiteralRow(columns: Column[]): (tuple: RawTuple) => Row {
  const converters = columns.map(column => column.json)
  const body = columns.map((column, i) => {
    const value = `t[${column.index}]`
    return `${JSON.stringify(column.attribute)}: ${value} === null ? null : c[${i}](${value})`
  }).join(',\n    ')

  const build = new Function('c', `return function liveSyncRow(t) {\n  return {\n    ${body}\n  }\n}`) as (c: typeof converters) => (tuple: RawTuple) => Row
  return build(converters)
}

/**
 * Compiles the shaper of `watch` for `relation`. Returns null (and says why
 * in `problem`) when the relation lacks the key or id column.
 */
export function compileShaper(watch: WatchedModel, relation: RelationMessage, parserFor: ParserLookup): CompiledShaper | { problem: string } {
  const position = new Map(relation.columns.map((column, index) => [column.name, index]))
  const columnOf = (field: string): Column | null => {
    const index = position.get(field)
    if (index === undefined) return null
    const typeOid = relation.columns[index]!.typeOid
    const parse = parserFor(typeOid)
    return { attribute: field, index, parse, json: converter(typeOid, parse) }
  }
  const keyColumn = columnOf(watch.key.field)
  if (!keyColumn) {
    return { problem: `table ${relation.schema}.${relation.name} has no column ${watch.key.field} for ${watch.name}'s subscriptionKey ${watch.key.attribute}` }
  }
  const idColumns: Column[] = []
  for (const id of watch.id) {
    const column = columnOf(id.field)
    if (!column) return { problem: `table ${relation.schema}.${relation.name} has no column ${id.field} for ${watch.name}'s id ${id.attribute}` }
    idColumns.push(column)
  }
  const columns: Column[] = []
  const missing: string[] = []
  for (const { attribute, field } of watch.attributes) {
    const column = columnOf(field)
    if (column) columns.push({ ...column, attribute })
    else missing.push(attribute)
  }
  const idAttributes = watch.id.map(id => id.attribute)

  const key = (tuple: RawTuple, fallback: RawTuple | null): string | null => {
    const text = valueAt(tuple, fallback, keyColumn.index)
    return text == null ? null : keyString(keyColumn.json(text))
  }
  const id = (row: Row): unknown => rowId(row, idAttributes)
  // Rows of one transaction mostly share a key: remember the last conversion.
  let lastValue: unknown
  let lastKey: string | null = null
  const keyAttribute = watch.key.attribute
  // The row holds the key's JSON value unless a getter or scope changed it.
  const keyInRow = !watch.buildThroughModel && watch.attributes.some(a => a.attribute === keyAttribute)
  const rowKey = (row: Row, tuple: RawTuple, fallback: RawTuple | null): string | null => {
    if (!keyInRow) return key(tuple, fallback)
    const value = row[keyAttribute]
    if (value !== lastValue || lastKey === null) {
      lastValue = value
      lastKey = keyString(value)
    }
    return lastKey
  }
  const columnValue = (tuple: RawTuple, column: Column): unknown => {
    const text = tuple[column.index]
    return text == null ? null : column.json(text)
  }
  const tupleId = idColumns.length === 1
    ? (tuple: RawTuple): unknown => columnValue(tuple, idColumns[0]!)
    : (tuple: RawTuple): unknown => idColumns.map(column => columnValue(tuple, column))

  const literalRow = compileLiteralRow(columns)
  const fastRow = (tuple: RawTuple, fallback: RawTuple | null): Row => {
    // Inserts and most updates carry every value: build the row in one literal.
    if (!tuple.includes(undefined)) return literalRow(tuple)
    const row: Row = {}
    for (const column of columns) {
      const text = valueAt(tuple, fallback, column.index)
      if (text === undefined) continue
      row[column.attribute] = text === null ? null : column.json(text)
    }
    return row
  }

  // Custom getters, VIRTUAL attributes or an own toJSON: let Sequelize build it.
  const exposes = watch.exposes
  const modelRow = (tuple: RawTuple, fallback: RawTuple | null): Row => {
    const values: Record<string, unknown> = {}
    for (const column of columns) {
      const text = valueAt(tuple, fallback, column.index)
      if (text !== undefined) values[column.attribute] = text === null ? null : column.parse(text)
    }
    const instance: Model = watch.model.build(values, { raw: true, isNewRecord: false })
    const row = JSON.parse(JSON.stringify(instance)) as Row
    // VIRTUAL attributes or an own toJSON may add names liveSync.attributes/exclude leave out.
    return exposes ? Object.fromEntries(Object.entries(row).filter(([name]) => exposes(name))) : row
  }

  return { watch, missing, row: watch.buildThroughModel ? modelRow : fastRow, key, rowKey, id, tupleId }
}
