/**
 * Turns row messages into per-key changes. Each watched table maps to the
 * models watching it (a model on a view beside one on its base table), and
 * each row is shaped once per model and appended to the list of the key it
 * belongs to, so routing costs the same however many keys have subscribers.
 * A model on a view is not shaped from the base row: the ids it touched are
 * collected (`ViewTouches`) and read back through the view at commit.
 */
import { idKey, type Change } from '../../shared/protocol'
import type { DeleteMessage, InsertMessage, RawTuple, RelationMessage, TruncateMessage, UpdateMessage } from './pgoutput-decoder'
import { encodeChange } from './key-batch'
import { compileShaper, type CompiledShaper, type ParserLookup } from './row-shaper'
import type { LiveSyncLogger } from './errors'
import type { WatchedModel } from './watch-registry'

/**
 * A transaction's changes by routing key, in commit order within each key,
 * each serialized as soon as it is shaped (see KeyBatch). Counts what it
 * holds, so that a large transaction can be sent in parts as it arrives: a
 * key whose changes reach `chunkChars` is listed in `ready`.
 */
export class KeyedChanges {
  readonly byKey = new Map<string, { changes: string[], chars: number, limit: number }>()
  /** Characters held, all keys. */
  chars = 0
  /** Keys holding at least their part size, in the order they got there. */
  ready: string[] = []
  /** Keys that had a part taken: their next parts are full-sized. */
  private readonly taken = new Set<string>()
  /**
   * After `dropChanges()`: the keys the transaction touched (without their
   * changes), or `all` once they were more than it keeps.
   */
  dropped: Set<string> | 'all' | null = null
  private maxDroppedKeys = 0

  constructor(private readonly chunkChars = Number.POSITIVE_INFINITY) {}

  push(key: string, encoded: string): void {
    if (this.dropped) return this.touch(key)
    let entry = this.byKey.get(key)
    // A key's first part is an eighth of the size, so that it leaves soon after the transaction's first rows.
    if (!entry) this.byKey.set(key, (entry = { changes: [], chars: 0, limit: this.taken.has(key) ? this.chunkChars : this.chunkChars / 8 }))
    entry.changes.push(encoded)
    const before = entry.chars
    entry.chars += encoded.length + 1
    this.chars += encoded.length + 1
    if (entry.chars >= entry.limit && before < entry.limit) this.ready.push(key)
  }

  /** Takes the changes held for `key` (leaving none). */
  take(key: string): string[] {
    const entry = this.byKey.get(key)
    if (!entry) return []
    this.byKey.delete(key)
    this.taken.add(key)
    this.chars -= entry.chars
    return entry.changes
  }

  get size(): number {
    return this.byKey.size
  }

  /**
   * Forgets every change held and keeps only which keys the transaction
   * touches from now on, at most `maxKeys` of them (cluster mode: a
   * transaction too large to hand to Redis; its keys' subscribers reload).
   */
  dropChanges(maxKeys: number): void {
    this.dropped = new Set()
    this.maxDroppedKeys = maxKeys
    const keys = [...this.byKey.keys()]
    this.byKey.clear()
    this.ready = []
    this.chars = 0
    for (const key of keys) this.touch(key)
  }

  private touch(key: string): void {
    const dropped = this.dropped
    if (dropped === 'all' || !dropped || dropped.has(key)) return
    if (dropped.size >= this.maxDroppedKeys) this.dropped = 'all'
    else dropped.add(key)
  }
}

/** A row of a view-backed model that a transaction touched, as it was before the transaction. */
export interface ViewTouch {
  /** The row's id (JSON values). */
  id: unknown
  /** The base row existed before the transaction (it was not inserted by it). */
  existed: boolean
  /** The routing key the row had before the transaction (from the old base row). */
  oldKey: string | null
  /** The old base row, shaped on demand as the payload of a delete. */
  oldTuple: RawTuple | null
  shaper: CompiledShaper
}

/** Per view-backed model, the rows a transaction touched, by `idKey`. */
export type ViewTouches = Map<WatchedModel, Map<string, ViewTouch>>

/** Appends a change (serialized) to its key's list. */
export function pushChange(into: KeyedChanges, key: string, change: Change): void {
  into.push(key, encodeChange(change))
}

export class ChangeRouter {
  private readonly byTable = new Map<string, WatchedModel[]>()
  private readonly byRelation = new Map<number, { table: string, shapers: CompiledShaper[] }>()
  private readonly reported = new Set<string>()
  private touches: ViewTouches | null = null

  constructor(
    watched: readonly WatchedModel[],
    private readonly parserFor: ParserLookup,
    private readonly logger: LiveSyncLogger,
  ) {
    for (const watch of watched) {
      const list = this.byTable.get(watch.table)
      if (list) list.push(watch)
      else this.byTable.set(watch.table, [watch])
    }
  }

  /** The schema-qualified tables some model watches. */
  get tables(): string[] {
    return [...this.byTable.keys()]
  }

  /** The view rows the current transaction touched (and forget them): null when none. */
  takeTouches(): ViewTouches | null {
    const touches = this.touches
    this.touches = null
    return touches
  }

  /** Remembers the first touch of a row in a transaction: what it was before the transaction. */
  private touch(shaper: CompiledShaper, id: unknown, existed: boolean, oldKey: string | null, oldTuple: RawTuple | null): void {
    const touches = (this.touches ??= new Map())
    let rows = touches.get(shaper.watch)
    if (!rows) touches.set(shaper.watch, (rows = new Map()))
    const key = idKey(id)
    if (!rows.has(key)) rows.set(key, { id, existed, oldKey, oldTuple, shaper })
  }

  /** Forget every relation (a new replication session sends them again). */
  reset(): void {
    this.byRelation.clear()
  }

  /**
   * A relation message: (re)compile the shapers of the models watching it.
   * Postgres sends one before the first change of a table in a session and
   * again after its columns change, so `ALTER TABLE` while streaming works.
   */
  relation(message: RelationMessage): void {
    const table = `${message.schema}.${message.name}`
    const shapers: CompiledShaper[] = []
    for (const watch of this.byTable.get(table) ?? []) {
      const shaper = compileShaper(watch, message, this.parserFor)
      if ('problem' in shaper) {
        this.once(`${watch.name}:${shaper.problem}`, `[live-sync] ${shaper.problem}: changes of ${table} will not reach ${watch.name} subscribers.`)
        continue
      }
      if (shaper.missing.length > 0) {
        this.once(`${watch.name}:missing:${shaper.missing.join()}`, `[live-sync] ${watch.name}: table ${table} has no column for ${shaper.missing.join(', ')}; live rows leave ${shaper.missing.length === 1 ? 'it' : 'them'} out.`)
      }
      shapers.push(shaper)
    }
    if (shapers.length > 0) this.byRelation.set(message.relationOid, { table, shapers })
    else this.byRelation.delete(message.relationOid)
  }

  insert(message: InsertMessage, into: KeyedChanges): void {
    const shapers = this.byRelation.get(message.relationOid)?.shapers
    if (!shapers) return
    for (const shaper of shapers) {
      if (shaper.watch.readBack) {
        this.touch(shaper, shaper.tupleId(message.new), false, null, null)
        continue
      }
      const row = shaper.row(message.new, null)
      const key = shaper.rowKey(row, message.new, null)
      if (key === null) continue
      pushChange(into, key, { op: 'insert', model: shaper.watch.name, id: shaper.id(row), row })
    }
  }

  /**
   * An update that moves a row to another key (or gives it another id) goes
   * out as a delete of the old row and an insert of the new one.
   */
  update(message: UpdateMessage, into: KeyedChanges): void {
    const shapers = this.byRelation.get(message.relationOid)?.shapers
    if (!shapers) return
    const old = message.old
    const before: RawTuple | null = old ?? message.key
    for (const shaper of shapers) {
      if (shaper.watch.readBack) {
        this.touchUpdated(shaper, message, before)
        continue
      }
      const row = shaper.row(message.new, old)
      const key = shaper.rowKey(row, message.new, old)
      const id = shaper.id(row)
      // Under DEFAULT identity the key tuple only holds the primary key: a
      // missing subscription key there means "unchanged", not NULL.
      const oldKey = before ? (shaper.key(before, null) ?? (old ? null : key)) : key
      if (oldKey === key && (!before || idKey(shaper.tupleId(before)) === idKey(id))) {
        if (key !== null) pushChange(into, key, { op: 'update', model: shaper.watch.name, id, row })
        continue
      }
      if (oldKey !== null) {
        const oldRow = shaper.row(before!, null)
        pushChange(into, oldKey, { op: 'delete', model: shaper.watch.name, id: shaper.id(oldRow), row: oldRow })
      }
      if (key !== null) pushChange(into, key, { op: 'insert', model: shaper.watch.name, id, row })
    }
  }

  /** Deletes are routed by the old row's key; without one they reach no one. */
  delete(message: DeleteMessage, into: KeyedChanges): void {
    const shapers = this.byRelation.get(message.relationOid)?.shapers
    if (!shapers) return
    const tuple = message.old ?? message.key
    if (!tuple) return
    for (const shaper of shapers) {
      const key = shaper.key(tuple, null)
      if (shaper.watch.readBack) {
        this.touch(shaper, shaper.tupleId(tuple), true, key, tuple)
        continue
      }
      if (key === null) continue
      const row = shaper.row(tuple, null)
      pushChange(into, key, { op: 'delete', model: shaper.watch.name, id: shaper.id(row), row })
    }
  }

  /** An update of a view-backed model's base row: its old id and key (a new id is a new row). */
  private touchUpdated(shaper: CompiledShaper, message: UpdateMessage, before: RawTuple | null): void {
    const id = shaper.tupleId(message.new)
    const key = shaper.key(message.new, message.old)
    // Under DEFAULT identity a missing old tuple means the key columns did not change.
    const oldKey = before ? (shaper.key(before, null) ?? (message.old ? null : key)) : key
    const oldId = before ? shaper.tupleId(before) : id
    if (idKey(oldId) === idKey(id)) return this.touch(shaper, id, true, oldKey, before)
    this.touch(shaper, oldId, true, oldKey, before)
    this.touch(shaper, id, false, null, null)
  }

  /** The watched tables among those truncated. */
  truncated(message: TruncateMessage): string[] {
    const tables: string[] = []
    for (const oid of message.relationOids) {
      const entry = this.byRelation.get(oid)
      if (entry) tables.push(entry.table)
    }
    return tables
  }

  private once(id: string, message: string): void {
    if (this.reported.has(id)) return
    this.reported.add(id)
    this.logger.warn(message)
  }
}
