/**
 * Models on views honour the view. A transaction that touched a view's base
 * table is answered, before its batch is dispatched, by one query per view
 * model reading the touched ids back through the model (its default scope,
 * its JSON): a row now in the view goes out as an insert (it entered) or an
 * update to the key it has, a row that was in the view and is gone now (or
 * has another key) as a delete to the key it had, and a row outside the
 * view before and after as nothing.
 *
 * Whether a row was in the view before the transaction is remembered from
 * earlier read-backs (a bounded memory per view model). For a row not seen
 * since the stream began, the old base row (REPLICA IDENTITY FULL) gives the
 * key it would have had, and a row not in the view now gets a delete routed
 * by it, which a page that does not hold the row ignores. Only changes of
 * the base table are followed: a view whose membership depends on other
 * tables (a join) changes for them unseen.
 */
import { Op, type Sequelize, type WhereOptions } from 'sequelize'
import { idKey, keyString, type Row } from '../../shared/protocol'
import { pushChange, type KeyedChanges, type ViewTouches } from './change-router'
import { toJSONValue } from './row-shaper'
import { liveJSON, rawLiveJSON, readsRaw } from './snapshot-reader'
import type { WatchedModel } from './watch-registry'

/** Ids per query; a larger transaction reads its rows in several. */
const IDS_PER_QUERY = 1000

/** `where` selecting the rows with the given ids (JSON values, one array each for composite ids). */
export function idsWhere(watch: WatchedModel, ids: unknown[]): WhereOptions {
  if (watch.id.length === 1) return { [watch.id[0]!.attribute]: ids }
  return { [Op.or]: ids.map(id => Object.fromEntries(watch.id.map((attribute, i) => [attribute.attribute, (id as unknown[])[i]]))) }
}

interface ReadRow {
  row: Row
  key: string | null
}

async function readRows(watch: WatchedModel, ids: unknown[]): Promise<Map<string, ReadRow>> {
  const found = new Map<string, ReadRow>()
  const raw = readsRaw(watch)
  for (let i = 0; i < ids.length; i += IDS_PER_QUERY) {
    const where = idsWhere(watch, ids.slice(i, i + IDS_PER_QUERY))
    // Raw rows when they are the model's JSON already (no getters to run): no instance per row.
    const rows = raw
      ? (await watch.model.findAll({ where, raw: true }) as unknown as Array<Record<string, unknown>>).map(values => ({ values, row: rawLiveJSON(watch, values) }))
      : (await watch.model.findAll({ where })).map(instance => ({ values: instance.dataValues as Record<string, unknown>, row: liveJSON(watch, instance) }))
    for (const { values, row } of rows) {
      // Ids and keys as the base row's shaper converts them, so they meet in idKey/keyString.
      const id = watch.id.map(attribute => toJSONValue(values[attribute.attribute]))
      const key = keyString(toJSONValue(values[watch.key.attribute]))
      found.set(idKey(id.length === 1 ? id[0] : id), { row, key })
    }
  }
  return found
}

/** Ids remembered per view model, beyond which the least recently touched are forgotten. */
const REMEMBERED_PER_MODEL = 10_000

/** Reads touched rows back through their view models, remembering which were in the view. */
export class ViewReader {
  /** Per view model: id → the key the row had in the view, or null when it was not in it. */
  private readonly membership = new Map<WatchedModel, Map<string, string | null>>()

  constructor(private readonly remembered = REMEMBERED_PER_MODEL) {}

  /** Appends the changes the touched rows amount to, to the transaction's per-key changes. */
  async readBack(touches: ViewTouches, into: KeyedChanges): Promise<void> {
    for (const [watch, rows] of touches) {
      const found = await readRows(watch, [...rows.values()].map(touch => touch.id))
      let memory = this.membership.get(watch)
      if (!memory) this.membership.set(watch, (memory = new Map()))
      for (const [id, touch] of rows) {
        const now = found.get(id)
        const key = now?.key ?? null
        // Before the transaction: not there (inserted by it), as remembered, or unknown.
        const before = touch.existed ? memory.get(id) : null
        // Unknown: it may have been in the view with the key of its old base row.
        const left = before === undefined ? touch.oldKey : before
        if (left !== null && left !== key) {
          const row = touch.oldTuple ? touch.shaper.row(touch.oldTuple, null) : (now?.row ?? {})
          pushChange(into, left, { op: 'delete', model: watch.name, id: touch.id, row })
        }
        if (now && key !== null) {
          pushChange(into, key, { op: left === key ? 'update' : 'insert', model: watch.name, id: touch.id, row: now.row })
        }
        memory.delete(id)
        memory.set(id, key)
        if (memory.size > this.remembered) memory.delete(memory.keys().next().value!)
      }
    }
  }
}

// The 64-bit txid of a 32-bit xid from the stream: the epoch of the current snapshot's xmax,
// or the one before when the xid is above xmax's low half (it committed before a wraparound).
const VISIBLE_SQL = `SELECT txid_visible_in_snapshot(
  CASE WHEN $1::bigint < x % 4294967296 THEN x - x % 4294967296 + $1::bigint
       ELSE x - x % 4294967296 - 4294967296 + $1::bigint END, s) AS visible
  FROM (SELECT txid_current_snapshot() AS s, txid_snapshot_xmax(txid_current_snapshot()) AS x) AS t`

/**
 * Waits until a transaction decoded from the stream is visible to new
 * snapshots. Its commit record reaches us once flushed, which can be a
 * moment before Postgres shows it to other sessions; a read-back before that
 * would see the row as it was. Snapshots only move forward, so every query
 * started after this resolves sees the transaction.
 */
export async function waitUntilVisible(sequelize: Sequelize, xid: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const [rows] = await sequelize.query(VISIBLE_SQL, { bind: [xid], logging: false }) as [Array<{ visible: boolean }>, unknown]
    if (rows[0]?.visible) return
    if (Date.now() > deadline) throw new Error(`transaction ${xid} did not become visible within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 1))
  }
}
