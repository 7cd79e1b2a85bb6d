/**
 * Transactions become per-key batches in commit order, and reach exactly the
 * subscribers of each row's key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { DataTypes, Model, type Sequelize } from 'sequelize'
import { startHarness, type Harness } from '../support/engine-harness'
import { waitFor } from '../support/wait'

class Task extends Model {}
class VisibleTask extends Model {}
class Doc extends Model {}

const SCHEMA = `
  CREATE TABLE tasks (
    id serial PRIMARY KEY, organization_id integer, title text NOT NULL, archived boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE VIEW visible_tasks AS SELECT id, organization_id, title, created_at, updated_at FROM tasks WHERE NOT archived;
  CREATE TABLE docs (id serial PRIMARY KEY, org integer, title text, body text, meta jsonb);
  ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
  ALTER TABLE docs ALTER COLUMN meta SET STORAGE EXTERNAL;
`

function defineModels(sequelize: Sequelize) {
  Task.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    organizationId: DataTypes.INTEGER,
    title: DataTypes.TEXT,
    archived: DataTypes.BOOLEAN,
  }, { sequelize, tableName: 'tasks', underscored: true, liveSync: { subscriptionKey: 'organizationId' } })
  // A model on a view, fed by the changes of the view's base table.
  VisibleTask.init({
    id: { type: DataTypes.INTEGER, primaryKey: true },
    organizationId: DataTypes.INTEGER,
    title: DataTypes.TEXT,
  }, { sequelize, tableName: 'visible_tasks', underscored: true, liveSync: { subscriptionKey: 'organizationId', id: 'id', table: 'tasks' } })
  Doc.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    orgId: { type: DataTypes.INTEGER, field: 'org' },
    title: DataTypes.TEXT,
    body: DataTypes.TEXT,
    meta: DataTypes.JSONB,
  }, { sequelize, tableName: 'docs', timestamps: false, liveSync: { subscriptionKey: 'orgId' } })
}

describe('routing by subscription key', () => {
  let harness: Harness
  let sql: (text: string, values?: unknown[]) => Promise<pg.QueryResult>
  let client: pg.Client

  beforeAll(async () => {
    harness = await startHarness({ name: 'engine_routing', schema: SCHEMA, models: defineModels, tables: ['tasks', 'docs'] })
    client = new pg.Client(harness.url)
    await client.connect()
    sql = (text, values) => client.query(text, values)
  })
  afterAll(async () => {
    await client?.end()
    await harness?.close()
  })

  it('delivers a change only to the subscribers of the row\'s key', async () => {
    const one = harness.collect(1)
    const two = harness.collect(2)
    await sql(`INSERT INTO tasks (organization_id, title) VALUES (1, 'for one')`)
    await sql(`INSERT INTO tasks (organization_id, title) VALUES (2, 'for two')`)
    await one.changeCount(2) // the Task and the VisibleTask change
    await two.changeCount(2)
    expect(one.changes.every(change => change.row.organizationId === 1)).toBe(true)
    expect(two.changes.every(change => change.row.organizationId === 2)).toBe(true)
    expect(one.changes.map(change => change.row.title)).toEqual(['for one', 'for one'])
  })

  it('routes a key change as a delete to the old key and an insert to the new one', async () => {
    const from = harness.collect(11)
    const to = harness.collect(12)
    const { rows: [{ id }] } = await sql(`INSERT INTO tasks (organization_id, title) VALUES (11, 'moving') RETURNING id`)
    await from.changeCount(2)
    await sql('UPDATE tasks SET organization_id = 12 WHERE id = $1', [id])
    await from.changeCount(4)
    await to.changeCount(2)
    expect(from.changes.slice(2).map(c => [c.op, c.model, c.id, c.row.organizationId])).toEqual([['delete', 'Task', id, 11], ['delete', 'VisibleTask', id, 11]])
    expect(to.changes.map(c => [c.op, c.model, c.id, c.row.organizationId])).toEqual([['insert', 'Task', id, 12], ['insert', 'VisibleTask', id, 12]])
  })

  it('routes deletes by the old row\'s key, never to everyone', async () => {
    const owner = harness.collect(21)
    const bystander = harness.collect(22)
    const { rows: [{ id }] } = await sql(`INSERT INTO tasks (organization_id, title) VALUES (21, 'doomed') RETURNING id`)
    // The view model's rows are read back through the view: let it see the row before it goes.
    await owner.changeCount(2)
    await sql('DELETE FROM tasks WHERE id = $1', [id])
    await sql(`INSERT INTO tasks (organization_id, title) VALUES (22, 'marker')`)
    await owner.changeCount(4)
    await bystander.changeCount(2) // only its own marker, committed after the delete
    expect(owner.changes.slice(2).map(c => [c.op, c.id, c.row.title])).toEqual([['delete', id, 'doomed'], ['delete', id, 'doomed']])
    expect(bystander.changes.map(c => c.row.title)).toEqual(['marker', 'marker'])
  })

  it('sends a row whose key is NULL to no one', async () => {
    const seen: unknown[] = []
    const unsubscribes = ['null', '', 'undefined', 0].map(key => harness.engine.subscribe(key, delivery => seen.push(delivery)).unsubscribe)
    const marker = harness.collect(31)
    await sql(`INSERT INTO tasks (organization_id, title) VALUES (NULL, 'nobody''s')`)
    await sql(`INSERT INTO tasks (organization_id, title) VALUES (31, 'marker')`)
    await marker.changeCount(2)
    expect(seen).toEqual([])
    unsubscribes.forEach(unsubscribe => unsubscribe())
  })

  it('gives an id change a delete of the old id and an insert of the new one', async () => {
    const collector = harness.collect(41)
    const { rows: [{ id }] } = await sql(`INSERT INTO tasks (organization_id, title) VALUES (41, 'renumbered') RETURNING id`)
    await collector.changeCount(2)
    await sql('UPDATE tasks SET id = $2 WHERE id = $1', [id, id + 100_000])
    const changes = await collector.changeCount(6)
    expect(changes.slice(2).filter(c => c.model === 'Task').map(c => [c.op, c.id])).toEqual([['delete', id], ['insert', id + 100_000]])
  })

  it('delivers a 10,000-row transaction in parts as it is read, the view model\'s rows with the last', async () => {
    const collector = harness.collect(51)
    await sql(`INSERT INTO tasks (organization_id, title) SELECT 51, 'bulk ' || n FROM generate_series(1, 10000) AS n`)
    await waitFor(() => collector.batches.at(-1)?.part?.last === true, { timeout: 20_000 })
    const batches = collector.batches
    expect(batches.length).toBeGreaterThan(1)
    expect(batches.map(batch => batch.part?.index)).toEqual(batches.map((_, i) => i))
    const changes = batches.flatMap(batch => batch.changes)
    expect(changes).toHaveLength(20_000) // Task + VisibleTask per row
    expect(changes.filter(c => c.model === 'Task').map(c => c.row.title)).toEqual(Array.from({ length: 10_000 }, (_, i) => `bulk ${i + 1}`))
    // The view model's rows are read back at the commit: they go out with the last part.
    expect(batches.at(-1)!.changes.filter(c => c.model === 'VisibleTask')).toHaveLength(10_000)
  })

  it('delivers concurrent transactions in commit order', async () => {
    const collector = harness.collect(61)
    const writers = await Promise.all(Array.from({ length: 4 }, async () => {
      const writer = new pg.Client(harness.url)
      await writer.connect()
      return writer
    }))
    // Interleave: each writer opens a transaction, inserts, and they commit in reverse order.
    for (const [i, writer] of writers.entries()) {
      await writer.query('BEGIN')
      await writer.query(`INSERT INTO tasks (organization_id, title) VALUES (61, $1)`, [`writer ${i}`])
    }
    const commitOrder = [3, 1, 0, 2]
    for (const i of commitOrder) await writers[i]!.query('COMMIT')
    await Promise.all(writers.map(writer => writer.end()))
    await collector.batchCount(4)
    expect(collector.batches.map(batch => batch.changes[0]!.row.title)).toEqual(commitOrder.map(i => `writer ${i}`))
    const cursors = collector.batches.map(batch => batch.cursor)
    expect([...cursors].sort((a, b) => (a.length - b.length) || a.localeCompare(b))).toEqual(cursors)
  })

  it('feeds a model on a view beside the model on its base table', async () => {
    const collector = harness.collect(71)
    const task = await Task.create({ organizationId: 71, title: 'both' })
    const changes = await collector.changeCount(2)
    const byModel = Object.fromEntries(changes.map(change => [change.model, change.row]))
    expect(byModel.Task).toEqual(JSON.parse(JSON.stringify(await Task.findByPk(task.get('id') as number))))
    expect(byModel.VisibleTask).toEqual(JSON.parse(JSON.stringify(await VisibleTask.findByPk(task.get('id') as number))))
  })

  it('fills unchanged TOASTed values from the old row instead of nulls', async () => {
    const collector = harness.collect(81)
    const body = Array.from({ length: 6000 }, (_, i) => String.fromCharCode(33 + (i * 7919) % 90)).join('')
    const meta = { blob: body, list: Array.from({ length: 200 }, (_, i) => i) }
    const doc = await Doc.create({ orgId: 81, title: 'big', body, meta })
    // Stored out of line, so an update that does not touch it sends it as "unchanged".
    const { rows: [{ toast }] } = await sql(`SELECT reltoastrelid::regclass::text AS toast FROM pg_class WHERE oid = 'docs'::regclass`)
    const { rows: [{ chunks }] } = await sql(`SELECT count(*)::int AS chunks FROM ${toast}`)
    expect(chunks).toBeGreaterThan(0)
    await sql(`UPDATE docs SET title = 'renamed' WHERE id = $1`, [doc.get('id')])
    const [, update] = await collector.changeCount(2)
    expect(update!.op).toBe('update')
    expect(update!.row).toEqual({ id: doc.get('id'), orgId: 81, title: 'renamed', body, meta })
  })

  it('keeps streaming through ALTER TABLE ADD COLUMN', async () => {
    const collector = harness.collect(91)
    await sql(`INSERT INTO docs (org, title) VALUES (91, 'before')`)
    await collector.changeCount(1)
    await sql('ALTER TABLE docs ADD COLUMN extra text')
    await sql(`INSERT INTO docs (org, title, extra) VALUES (91, 'after', 'ignored: not an attribute')`)
    await sql('ALTER TABLE docs DROP COLUMN extra')
    await sql(`INSERT INTO docs (org, title) VALUES (91, 'after drop')`)
    const changes = await collector.changeCount(3)
    expect(changes.map(c => c.row.title)).toEqual(['before', 'after', 'after drop'])
    expect(Object.keys(changes[1]!.row).sort()).toEqual(['body', 'id', 'meta', 'orgId', 'title'])
  })

  it('turns TRUNCATE into a resync for subscribers', async () => {
    const collector = harness.collect(101)
    const before = harness.engine.cursor!
    await sql('TRUNCATE docs')
    await waitFor(() => collector.resyncs.length === 1)
    expect(collector.resyncs[0]!.reason).toBe('truncate')
    expect(collector.resyncs[0]!.tables).toEqual(['public.docs'])
    // The history cannot express a TRUNCATE: a replay from before it must resync too.
    expect(harness.engine.subscribe(101, () => {}, before).tooOld).toBe(true)
  })

  it('does not call subscribers of other keys, however many there are', async () => {
    let otherCalls = 0
    const others = Array.from({ length: 10_000 }, (_, i) => harness.engine.subscribe(100_000 + i, () => otherCalls++).unsubscribe)
    const target = harness.collect(111)
    await sql(`INSERT INTO tasks (organization_id, title) VALUES (111, 'one of many')`)
    await target.changeCount(2)
    expect(otherCalls).toBe(0)
    expect(harness.engine.hub.keyCount).toBeGreaterThanOrEqual(10_001)
    others.forEach(unsubscribe => unsubscribe())
  })
})
