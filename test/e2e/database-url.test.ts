/**
 * `NUXT_LIVE_SYNC_DATABASE_URL` overrides where replication connects (the
 * module's `databaseUrl` runtime config); the app's own queries keep using
 * its Sequelize connection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { frameOf, LiveSyncTestClient, setupFixtureServer, waitForLiveSync } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'

const appDb = await createFixtureDatabase('e2e_url_app')
const replicaDb = await createFixtureDatabase('e2e_url_replicated')
afterAll(async () => {
  await appDb.drop()
  await replicaDb.drop()
})
await setupFixtureServer({ databaseUrl: appDb.url, env: { NUXT_LIVE_SYNC_DATABASE_URL: replicaDb.url } })
beforeAll(async () => {
  await waitForLiveSync()
})

describe('NUXT_LIVE_SYNC_DATABASE_URL', () => {
  it('streams the database it names, not the one the app queries', async () => {
    const client = await LiveSyncTestClient.connect()
    await client.next(frameOf('hello'))
    await client.request({ type: 'sub', key: 1 }, frameOf('subscribed'))
    await appDb.insertTask({ organizationId: 1, title: 'in the app database' })
    const id = await replicaDb.insertTask({ organizationId: 1, title: 'in the replicated database' })
    const tx = await client.next(frameOf('tx'))
    expect(tx.changes.map(change => [change.model, change.id, change.row.title])).toEqual([['Task', id, 'in the replicated database']])
    await client.close()
  })
})
