/**
 * A model on a view honours the view: after each transaction on the base
 * table the touched ids are read back through the view, so rows leave and
 * enter it as the view says; models on plain tables stay on the path with no
 * query.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DataTypes, Model, type Sequelize } from 'sequelize'
import { startHarness, type Harness } from '../support/engine-harness'
import { waitFor } from '../support/wait'
import type { Change } from '../../src/runtime/shared/protocol'

class Task extends Model {}
class OpenTask extends Model {}
class Note extends Model {}

const SCHEMA = `
  CREATE TABLE tasks (
    id serial PRIMARY KEY, organization_id integer, title text NOT NULL, done boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE VIEW open_tasks AS SELECT id, organization_id, title, upper(title) AS shout, created_at, updated_at FROM tasks WHERE NOT done;
  CREATE TABLE notes (id serial PRIMARY KEY, organization_id integer, body text);
`

/** Statements Sequelize ran (the app's own queries included), to tell whether a transaction cost one. */
const statements: string[] = []

function defineModels(sequelize: Sequelize) {
  // Sequelize's typings lack its `options`; the logging option is how it reports every statement.
  Object.assign((sequelize as unknown as { options: object }).options, { logging: (sql: string) => statements.push(sql) })
  Task.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    organizationId: DataTypes.INTEGER,
    title: DataTypes.TEXT,
    done: DataTypes.BOOLEAN,
  }, { sequelize, tableName: 'tasks', underscored: true, liveSync: { subscriptionKey: 'organizationId' } })
  OpenTask.init({
    id: { type: DataTypes.INTEGER, primaryKey: true },
    organizationId: DataTypes.INTEGER,
    title: DataTypes.TEXT,
    // A column only the view has: rows come from the view, not from the base row.
    shout: DataTypes.TEXT,
  }, { sequelize, tableName: 'open_tasks', underscored: true, liveSync: { subscriptionKey: 'organizationId', table: 'tasks' } })
  Note.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    organizationId: DataTypes.INTEGER,
    body: DataTypes.TEXT,
  }, { sequelize, tableName: 'notes', underscored: true, timestamps: false, liveSync: { subscriptionKey: 'organizationId' } })
}

const openChanges = (changes: Change[]) => changes.filter(change => change.model === 'OpenTask').map(change => [change.op, change.id, change.row.title])

describe('a model on a view', () => {
  let harness: Harness
  const sql = (text: string, values?: unknown[]) => harness.sql(text, values)

  beforeAll(async () => {
    harness = await startHarness({ name: 'engine_views', schema: SCHEMA, models: defineModels, tables: ['tasks', 'notes'] })
  })
  afterAll(async () => {
    await harness?.close()
  })

  /**
   * Runs a statement and waits for its batch: a view model's rows are read
   * back as they are when the read runs, so a test that wants to see each
   * step lets each one be read before the next.
   */
  async function step(collector: ReturnType<Harness['collect']>, text: string, values?: unknown[]): Promise<void> {
    const count = collector.batches.length
    await sql(text, values)
    await waitFor(() => collector.batches.length > count, { message: `no batch for ${text}` })
  }

  async function insert(org: number, title: string, done = false): Promise<number> {
    const { rows: [row] } = await sql('INSERT INTO tasks (organization_id, title, done) VALUES ($1, $2, $3) RETURNING id', [org, title, done])
    return row.id
  }

  it('gets rows shaped by the view (through the model), and nothing for a row inserted outside it', async () => {
    const collector = harness.collect(1)
    const open = await insert(1, 'open')
    await insert(1, 'done already', true)
    const marker = await insert(1, 'marker')
    await waitFor(() => collector.changes.some(change => change.model === 'OpenTask' && change.id === marker))
    expect(openChanges(collector.changes)).toEqual([['insert', open, 'open'], ['insert', marker, 'marker']])
    const row = collector.changes.find(change => change.model === 'OpenTask' && change.id === open)!.row
    expect(row).toEqual(JSON.parse(JSON.stringify(await OpenTask.findByPk(open))))
    expect(row.shout).toBe('OPEN')
  })

  it('sends a delete when a row leaves the view and an insert when it comes back', async () => {
    const collector = harness.collect(2)
    const id = await insert(2, 'flip')
    await waitFor(() => collector.batches.length === 1)
    await step(collector, 'UPDATE tasks SET done = true WHERE id = $1', [id])
    await step(collector, `UPDATE tasks SET title = 'still done' WHERE id = $1`, [id])
    await step(collector, 'UPDATE tasks SET done = false WHERE id = $1', [id])
    await step(collector, `UPDATE tasks SET title = 'open again' WHERE id = $1`, [id])
    expect(collector.batches.map(batch => openChanges(batch.changes))).toEqual([
      [['insert', id, 'flip']],
      [['delete', id, 'flip']],
      [], // a row outside the view before and after: nothing
      [['insert', id, 'still done']],
      [['update', id, 'open again']],
    ])
  })

  it('routes a row that moved to another key as a delete to the old key and an insert to the new one, in one transaction', async () => {
    const from = harness.collect(3)
    const to = harness.collect(4)
    const id = await insert(3, 'mover')
    await waitFor(() => from.batches.length === 1)
    await step(from, 'UPDATE tasks SET organization_id = 4 WHERE id = $1', [id])
    await waitFor(() => to.changes.length >= 2)
    expect(openChanges(from.changes)).toEqual([['insert', id, 'mover'], ['delete', id, 'mover']])
    expect(openChanges(to.changes)).toEqual([['insert', id, 'mover']])
    expect(to.batches[0]!.cursor).toBe(from.batches[1]!.cursor)
  })

  it('sends a delete when a row is deleted, to the key it had', async () => {
    const collector = harness.collect(5)
    const id = await insert(5, 'doomed')
    await waitFor(() => collector.batches.length === 1)
    await step(collector, 'DELETE FROM tasks WHERE id = $1', [id])
    expect(openChanges(collector.changes)).toEqual([['insert', id, 'doomed'], ['delete', id, 'doomed']])
  })

  it('keeps commit order when plain transactions follow one that waits for its read-back', async () => {
    const collector = harness.collect(6)
    // The same collector on a second key: its deliveries are in dispatch order across both keys.
    const unsubscribe = harness.engine.subscribe(60, collector.receive).unsubscribe
    const order: string[] = []
    for (let i = 0; i < 30; i++) {
      const label = `step ${i}`
      // Tasks (read back) and notes (no read-back), on two keys, without waiting in between.
      if (i % 3 === 0) await sql('INSERT INTO tasks (organization_id, title) VALUES (6, $1)', [label])
      else await sql('INSERT INTO notes (organization_id, body) VALUES ($1, $2)', [i % 2 === 0 ? 6 : 60, label])
      order.push(label)
    }
    await waitFor(() => collector.batches.length >= 30)
    unsubscribe()
    expect(collector.batches.map(batch => String(batch.changes[0]!.row.title ?? batch.changes[0]!.row.body))).toEqual(order)
    const cursors = collector.batches.map(batch => batch.cursor)
    expect([...cursors].sort((a, b) => (a.length - b.length) || a.localeCompare(b))).toEqual(cursors)
  })

  it('reads the touched rows back with one query per transaction, and none for a table no view model watches', async () => {
    const collector = harness.collect(7)
    const before = statements.length
    await sql(`INSERT INTO notes (organization_id, body) SELECT 7, 'note ' || n FROM generate_series(1, 3) AS n`)
    await waitFor(() => collector.changes.length >= 3)
    expect(statements.slice(before)).toEqual([])
    await sql(`INSERT INTO tasks (organization_id, title) SELECT 7, 'bulk ' || n FROM generate_series(1, 50) AS n`)
    await waitFor(() => collector.changes.length >= 3 + 100)
    const reads = statements.slice(before).filter(statement => statement.includes('"open_tasks"'))
    expect(reads).toHaveLength(1)
    expect(collector.batches).toHaveLength(2)
  })
})
