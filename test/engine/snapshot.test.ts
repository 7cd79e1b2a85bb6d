/**
 * Snapshots: a key's rows read through the app's models (default scope,
 * toJSON), in keyset pages, with nested associations limited to the key, and
 * served to a subscribed socket by its PeerSession.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DataTypes, Model, type Sequelize } from 'sequelize'
import { startHarness, type Harness } from '../support/engine-harness'
import { waitFor } from '../support/wait'
import { compareLsn } from '../../src/runtime/shared/lsn'
import { LiveSyncError } from '../../src/runtime/server/engine/errors'
import { PeerSession } from '../../src/runtime/server/peer-session'
import type { Row, ServerMessage, SnapshotModel } from '../../src/runtime/shared/protocol'

class Project extends Model {}
class Task extends Model {}
class Membership extends Model {}

const SCHEMA = `
  CREATE TABLE projects (id serial PRIMARY KEY, organization_id integer, name text NOT NULL);
  CREATE TABLE tasks (
    id serial PRIMARY KEY, organization_id integer, project_id integer REFERENCES projects (id),
    title text NOT NULL, secret text, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE memberships (user_id integer, org_id integer, role text, PRIMARY KEY (user_id, org_id));
  INSERT INTO projects (organization_id, name) VALUES (1, 'alpha'), (1, 'beta'), (2, 'gamma');
  INSERT INTO tasks (organization_id, project_id, title, secret) VALUES
    (1, 1, 'a1', 's'), (1, 1, 'a2', 's'), (1, 2, 'b1', 's'), (1, NULL, 'loose', 's'), (1, 3, 'in gamma', 's'),
    (2, 1, 'other org in alpha', 's'), (2, 3, 'g1', 's');
  INSERT INTO memberships VALUES (1, 7, 'a'), (1, 8, 'b'), (2, 7, 'c'), (3, 7, 'd'), (2, 8, 'e');
`

function defineModels(sequelize: Sequelize) {
  Project.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    organizationId: DataTypes.INTEGER,
    name: DataTypes.TEXT,
  }, { sequelize, tableName: 'projects', underscored: true, timestamps: false, liveSync: { subscriptionKey: 'organizationId' } })
  Task.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    organizationId: DataTypes.INTEGER,
    projectId: DataTypes.INTEGER,
    title: DataTypes.TEXT,
    secret: DataTypes.TEXT,
  }, {
    sequelize,
    tableName: 'tasks',
    underscored: true,
    // Snapshot rows have the shape of live rows: without what the default scope leaves out.
    defaultScope: { attributes: { exclude: ['secret'] } },
    liveSync: { subscriptionKey: 'organizationId' },
  })
  Membership.init({
    userId: { type: DataTypes.INTEGER, primaryKey: true },
    orgId: { type: DataTypes.INTEGER, primaryKey: true },
    role: DataTypes.TEXT,
  }, { sequelize, tableName: 'memberships', underscored: true, timestamps: false, liveSync: { subscriptionKey: 'orgId', exclude: ['role'] } })
  Project.hasMany(Task, { as: 'tasks', foreignKey: 'projectId' })
  Task.belongsTo(Project, { as: 'project', foreignKey: 'projectId' })
}

const json = (value: unknown) => JSON.parse(JSON.stringify(value)) as Row[]

describe('engine snapshots', () => {
  let harness: Harness

  beforeAll(async () => {
    harness = await startHarness({ name: 'engine_snapshot', schema: SCHEMA, models: defineModels })
  })
  afterAll(async () => {
    await harness?.close()
  })

  async function read(key: string | number, models: SnapshotModel[], pageSize?: number) {
    const pages: Array<[number, Row[]]> = []
    const result = await harness.engine.snapshot(key, models, (index, rows) => {
      pages.push([index, rows])
    }, { pageSize })
    return { ...result, pages, rows: models.map((_, i) => pages.filter(([index]) => index === i).flatMap(([, rows]) => rows)) }
  }

  it('reads the key\'s rows through the model, like findAll (default scope, toJSON), in id-ordered pages', async () => {
    const snapshot = await read(1, [{ model: 'Task' }], 2)
    expect(snapshot.rows[0]).toEqual(json(await Task.findAll({ where: { organizationId: 1 }, order: [['id', 'ASC']] })))
    expect(snapshot.rows[0]!.map(row => row.title)).toEqual(['a1', 'a2', 'b1', 'loose', 'in gamma'])
    expect(snapshot.rows[0]![0]).not.toHaveProperty('secret')
    expect(snapshot.pages.map(([, rows]) => rows.length)).toEqual([2, 2, 1])
    expect(snapshot.models).toEqual({ Task: { id: ['id'] } })
    expect(snapshot.cursor).toBe(harness.engine.snapshotCursor())
  })

  it('pages through a composite id, and leaves out what liveSync.exclude leaves out of live rows', async () => {
    const snapshot = await read(7, [{ model: 'Membership' }], 1)
    expect(snapshot.rows[0]!.map(row => [row.userId, row.orgId])).toEqual([[1, 7], [2, 7], [3, 7]])
    expect(snapshot.rows[0]![0]).toEqual({ userId: 1, orgId: 7 })
    expect(snapshot.models).toEqual({ Membership: { id: ['userId', 'orgId'] } })
  })

  it('nests has-many and belongs-to associations, limited to the key', async () => {
    const snapshot = await read('1', [{ model: 'Project', include: ['tasks'] }, { model: 'Task', include: ['project'] }], 1)
    expect(snapshot.rows[0]!.map(project => [project.name, (project.tasks as Row[]).map(task => task.title)])).toEqual([
      ['alpha', ['a1', 'a2']], // not the task of organization 2 in it
      ['beta', ['b1']],
    ])
    expect((snapshot.rows[0]![0]!.tasks as Row[])[0]).not.toHaveProperty('secret')
    expect(snapshot.rows[1]!.map(task => [task.title, (task.project as Row | null)?.name ?? null])).toEqual([
      ['a1', 'alpha'],
      ['a2', 'alpha'],
      ['b1', 'beta'],
      ['loose', null],
      ['in gamma', null], // gamma belongs to organization 2
    ])
    expect(snapshot.models).toEqual({ Project: { id: ['id'] }, Task: { id: ['id'] } })
  })

  it('gives a key the key column cannot hold no rows, and says what is wrong with a request', async () => {
    expect((await read('not a number', [{ model: 'Task' }])).rows).toEqual([[]])
    await expect(read(1, [{ model: 'Nope' }])).rejects.toThrow(LiveSyncError)
    await expect(read(1, [{ model: 'Nope' }])).rejects.toThrow(/model "Nope" is not watched \(watched: Project, Task, Membership\)/)
    await expect(read(1, [{ model: 'Project', include: ['owner'] }])).rejects.toThrow(/model Project has no association "owner" \(it has: tasks\)/)
  })
})

describe('a socket\'s snapshots (PeerSession on a running engine)', () => {
  let harness: Harness
  beforeAll(async () => {
    harness = await startHarness({ name: 'engine_snapshot_session', schema: SCHEMA, models: defineModels })
  })
  afterAll(async () => {
    await harness?.close()
  })

  function session(options: Partial<ConstructorParameters<typeof PeerSession>[0]> = {}) {
    const frames: ServerMessage[] = []
    const peer = new PeerSession({ engine: harness.engine, send: frame => frames.push(JSON.parse(frame)), ...options })
    return { peer, frames }
  }
  const ended = (frames: ServerMessage[], ref: number) => frames.find(frame => (frame.type === 'snapshotted' || frame.type === 'error') && frame.ref === ref)

  it('answers a subscribed key with pages and a cursor at least as new as the server\'s position when asked', async () => {
    const { peer, frames } = session({ snapshot: { pageSize: 2 } })
    await peer.receive('{"type":"sub","key":1}')
    const asked = harness.engine.cursor!
    await peer.receive(JSON.stringify({ type: 'snapshot', key: 1, models: [{ model: 'Task' }, { model: 'Project' }], ref: 4 }))
    await waitFor(() => ended(frames, 4))
    const answer = frames.slice(1)
    expect(answer.map(frame => frame.type === 'snapshot' ? `${frame.index}:${frame.rows.length}` : frame.type)).toEqual(['0:2', '0:2', '0:1', '1:2', 'snapshotted'])
    const end = answer.at(-1)!
    expect(end).toEqual({ type: 'snapshotted', key: '1', ref: 4, cursor: expect.any(String), models: { Task: { id: ['id'] }, Project: { id: ['id'] } } })
    expect(compareLsn((end as { cursor: string }).cursor, asked)).toBeGreaterThanOrEqual(0)
    peer.close()
  })

  it('splits a page into frames of bounded size', async () => {
    // Smaller than one row: each row goes in a frame of its own.
    const { peer, frames } = session({ snapshot: { maxFrameChars: 100 } })
    await peer.receive('{"type":"sub","key":1}')
    await peer.receive(JSON.stringify({ type: 'snapshot', key: 1, models: [{ model: 'Task' }], ref: 3 }))
    await waitFor(() => ended(frames, 3))
    const pages = frames.filter(frame => frame.type === 'snapshot') as Array<{ rows: Row[] }>
    expect(pages.map(page => page.rows.length)).toEqual([1, 1, 1, 1, 1])
    peer.close()
  })

  it('refuses a key the socket has not subscribed to, and models it cannot read, naming the request', async () => {
    const { peer, frames } = session()
    await peer.receive(JSON.stringify({ type: 'snapshot', key: 2, models: [{ model: 'Task' }], ref: 1 }))
    expect(frames).toEqual([{ type: 'error', code: 'bad-request', key: '2', ref: 1, message: expect.stringContaining('has not subscribed to') }])
    await peer.receive('{"type":"sub","key":2}')
    await peer.receive(JSON.stringify({ type: 'snapshot', key: 2, models: [{ model: 'Secret' }], ref: 2 }))
    expect(frames.at(-1)).toEqual({ type: 'error', code: 'bad-request', key: '2', ref: 2, message: expect.stringContaining('model "Secret" is not watched') })
    peer.close()
  })

  it('reads one snapshot at a time per socket and bounds how many may wait', async () => {
    const { peer, frames } = session({ snapshot: { maxQueued: 2 } })
    await peer.receive('{"type":"sub","key":1}')
    for (const ref of [1, 2, 3]) await peer.receive(JSON.stringify({ type: 'snapshot', key: 1, models: [{ model: 'Task' }], ref }))
    expect(frames.at(-1)).toEqual({ type: 'error', code: 'bad-request', key: '1', ref: 3, message: expect.stringContaining('at most 2 snapshots waiting') })
    await waitFor(() => ended(frames, 2))
    const ends = frames.filter(frame => frame.type === 'snapshotted').map(frame => (frame as { ref: number }).ref)
    expect(ends).toEqual([1, 2])
    // Pages of the two requests do not interleave.
    const refs = frames.filter(frame => frame.type === 'snapshot' || frame.type === 'snapshotted').map(frame => (frame as { ref: number }).ref)
    expect(refs).toEqual([...refs].sort())
    peer.close()
  })

  it('stops a snapshot whose subscription ended, telling the request so', async () => {
    const { peer, frames } = session()
    await peer.receive('{"type":"sub","key":1}')
    void peer.receive(JSON.stringify({ type: 'snapshot', key: 1, models: [{ model: 'Task' }], ref: 9 }))
    await peer.receive('{"type":"unsub","key":1}')
    await waitFor(() => ended(frames, 9))
    expect(ended(frames, 9)).toEqual({ type: 'error', code: 'bad-request', key: '1', ref: 9, message: expect.stringMatching(/subscription of key "1" ended/) })
    expect(frames.filter(frame => frame.type === 'snapshot')).toEqual([])
    peer.close()
  })

  it('waits for a socket that has too much unsent before writing the next page', async () => {
    let buffered = 2000 // above the snapshot's bound, below the slow-consumer one
    let polls = 0
    const { peer, frames } = session({ bufferedAmount: () => (polls++, buffered), snapshot: { maxBufferedBytes: 1000 } })
    await peer.receive('{"type":"sub","key":1}')
    await peer.receive(JSON.stringify({ type: 'snapshot', key: 1, models: [{ model: 'Task' }], ref: 5 }))
    // The first page is read and waits: the session keeps asking the socket, and writes nothing.
    await waitFor(() => polls >= 3)
    expect(frames.filter(frame => frame.type === 'snapshot' || frame.type === 'snapshotted')).toEqual([])
    buffered = 0
    await waitFor(() => ended(frames, 5))
    expect(ended(frames, 5)!.type).toBe('snapshotted')
    peer.close()
  })
})
