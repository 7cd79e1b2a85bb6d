import { createRequire } from 'node:module'
import { createJiti } from 'jiti'
import { createDatabase, startPostgres } from '../support/postgres.mjs'
import { fixtureDatabase } from './support.mjs'
const jiti = createJiti(import.meta.url)
const require = createRequire(import.meta.url)
const { Sequelize, DataTypes, Model } = require('sequelize')
const pg = require('pg')
const root = new URL('../..', import.meta.url).pathname
const { createLiveSyncEngine } = await jiti.import(`${root}src/runtime/server/engine/live-sync-engine.ts`)
const server = await startPostgres({ sources: ['system'], log: () => {} })
const url = await fixtureDatabase(server.url, 'tmp_rows', 3)
const sequelize = new Sequelize(url, { logging: false })
class Task extends Model {}
Task.init({ id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true }, organizationId: DataTypes.INTEGER, title: DataTypes.TEXT, done: DataTypes.BOOLEAN, projectId: DataTypes.INTEGER }, { sequelize, tableName: 'tasks', underscored: true, liveSync: { subscriptionKey: 'organizationId' } })
const engine = createLiveSyncEngine({ sequelize, manageTables: false })
await engine.start()
const w = new pg.Client(url); await w.connect()
for (const n of [50000, 200000, 200000]) {
  let rows = 0, done
  const all = new Promise(r => done = r)
  const sub = engine.subscribe(1, b => { b.frameBytes(); rows += b.size; if (rows >= n) done(performance.now()) })
  await w.query('BEGIN'); await w.query(`INSERT INTO tasks (organization_id, title) SELECT 1, 'large ' || n FROM generate_series(1, $1) n`, [n])
  const cpu0 = process.cpuUsage()
  await w.query('COMMIT'); const t1 = performance.now()
  const end = await all
  const cpu = process.cpuUsage(cpu0)
  console.log(n, 'rows', (n / ((end - t1) / 1000)).toFixed(0), 'rows/s', ((cpu.user + cpu.system) / n).toFixed(2), 'µs CPU/row')
  sub.unsubscribe()
}
await w.end(); await engine.stop(); await sequelize.close(); await server.stop()
