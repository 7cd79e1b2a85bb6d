/**
 * Turns row messages into per-key changes. Each watched table maps to the
 * models watching it (a model on a view beside one on its base table), and
 * each row is shaped once per model and appended to the list of the key it
 * belongs to, so routing costs the same however many keys have subscribers.
 */
import { idKey, type Change } from '../../shared/protocol'
import type { DeleteMessage, InsertMessage, RawTuple, RelationMessage, TruncateMessage, UpdateMessage } from './pgoutput-decoder'
import { encodeChange } from './key-batch'
import { compileShaper, type CompiledShaper, type ParserLookup } from './row-shaper'
import type { LiveSyncLogger } from './errors'
import type { WatchedModel } from './watch-registry'

/**
 * A transaction's changes by routing key, in commit order within each key,
 * each serialized as soon as it is shaped (see KeyBatch).
 */
export type KeyedChanges = Map<string, string[]>

function push(into: KeyedChanges, key: string, change: Change): void {
  const encoded = encodeChange(change)
  const list = into.get(key)
  if (list) list.push(encoded)
  else into.set(key, [encoded])
}

export class ChangeRouter {
  private readonly byTable = new Map<string, WatchedModel[]>()
  private readonly byRelation = new Map<number, { table: string, shapers: CompiledShaper[] }>()
  private readonly reported = new Set<string>()

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
      const row = shaper.row(message.new, null)
      const key = shaper.rowKey(row, message.new, null)
      if (key === null) continue
      push(into, key, { op: 'insert', model: shaper.watch.name, id: shaper.id(row), row })
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
      const row = shaper.row(message.new, old)
      const key = shaper.rowKey(row, message.new, old)
      const id = shaper.id(row)
      // Under DEFAULT identity the key tuple only holds the primary key: a
      // missing subscription key there means "unchanged", not NULL.
      const oldKey = before ? (shaper.key(before, null) ?? (old ? null : key)) : key
      if (oldKey === key && (!before || idKey(shaper.tupleId(before)) === idKey(id))) {
        if (key !== null) push(into, key, { op: 'update', model: shaper.watch.name, id, row })
        continue
      }
      if (oldKey !== null) {
        const oldRow = shaper.row(before!, null)
        push(into, oldKey, { op: 'delete', model: shaper.watch.name, id: shaper.id(oldRow), row: oldRow })
      }
      if (key !== null) push(into, key, { op: 'insert', model: shaper.watch.name, id, row })
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
      if (key === null) continue
      const row = shaper.row(tuple, null)
      push(into, key, { op: 'delete', model: shaper.watch.name, id: shaper.id(row), row })
    }
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
