/**
 * The fixture app with a `live-sync:authorize` handler that reads a session
 * cookie from the upgrade request (`orgs=1`): a socket gets the keys its
 * cookie allows and never another key's rows, subscriptions are authorized
 * again on every socket, and what a row exposes stops at the model's
 * default scope and `liveSync.exclude` (a `passwordHash` never goes out).
 */
import { $fetch, fetch } from '@nuxt/test-utils/e2e'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { frameOf, LiveSyncTestClient, setupFixtureServer, waitForDispatch, waitForLiveSync } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'

const db = await createFixtureDatabase('e2e_security_cookie')
afterAll(() => db.drop())
await setupFixtureServer({ databaseUrl: db.url, access: 'cookie' })
beforeAll(async () => {
  await waitForLiveSync()
})

/** A socket whose upgrade carries `cookie`, greeted. */
const connectAs = (cookie: string | null) => LiveSyncTestClient.greeted(cookie === null ? {} : { headers: { cookie } })

const currentLsn = async () => (await db.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'))[0]!.lsn

describe('a cookie-reading authorize handler', () => {
  it('gives a socket the keys its cookie allows, refuses the others, and never sends their rows', async () => {
    const client = await connectAs('theme=dark; orgs=1')
    const subscribed = await client.request({ type: 'sub', key: 1 }, frameOf('subscribed'))
    expect(subscribed).toMatchObject({ key: '1', models: { Task: { id: ['id'] }, User: { id: ['id'] } } })
    for (const key of [2, '3']) {
      const refused = await client.request({ type: 'sub', key }, frameOf('error'))
      expect(refused).toEqual({ type: 'error', code: 'forbidden', message: `[live-sync] subscription to ${JSON.stringify(key)} refused: not a member of organization ${key}`, key: String(key) })
    }
    const other = await db.insertTask({ organizationId: 2, title: 'organization 2 only' })
    const own = await db.insertTask({ organizationId: 1, title: 'organization 1' })
    await db.sql('UPDATE tasks SET organization_id = 3 WHERE id = $1', [other])
    const tx = await client.next(frameOf('tx', frame => frame.changes.some(change => change.id === own)))
    expect(tx.key).toBe('1')
    await waitForDispatch(await currentLsn())
    await client.request({ type: 'ping' }, frameOf('pong'))
    expect(client.received(frameOf('tx')).map(frame => frame.key)).toEqual(['1'])
    expect(JSON.stringify(client.frames)).not.toContain('organization 2 only')
    await client.close()
  })

  it('reads a sealed h3 session (what nuxt-auth-utils\' getUserSession reads) from the upgrade request', async () => {
    const response = await fetch('/api/test-support/sign-in', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ orgs: ['3'] }) })
    const sessionCookie = response.headers.getSetCookie().map(line => line.split(';')[0]!).find(pair => pair.startsWith('fixture-session='))
    expect(sessionCookie).toBeDefined()
    const client = await connectAs(sessionCookie!)
    expect(await client.request({ type: 'sub', key: 3 }, frameOf('subscribed'))).toMatchObject({ key: '3' })
    expect(await client.request({ type: 'sub', key: 1 }, frameOf('error'))).toMatchObject({ code: 'forbidden', key: '1' })
    await client.close()
  })

  it('refuses a socket without the cookie', async () => {
    const client = await connectAs(null)
    expect(await client.request({ type: 'sub', key: 1 }, frameOf('error'))).toMatchObject({ code: 'forbidden', key: '1' })
    await client.close()
  })

  it('authorizes again on every socket: a reconnect with another session gets that session\'s keys', async () => {
    const first = await connectAs('orgs=1,2')
    await first.request({ type: 'sub', key: 2 }, frameOf('subscribed'))
    const { cursor } = await first.request({ type: 'ping' }, frameOf('pong'))
    await first.close()
    // The same tab after the session changed, resuming from its cursor.
    const again = await connectAs('orgs=1')
    const refused = await again.request({ type: 'sub', key: 2, since: cursor! }, frameOf('error'))
    expect(refused).toMatchObject({ code: 'forbidden', key: '2' })
    await db.insertTask({ organizationId: 2, title: 'after the session changed' })
    await waitForDispatch(await currentLsn())
    await again.request({ type: 'ping' }, frameOf('pong'))
    expect(again.received(frameOf('tx'))).toEqual([])
    await again.close()
  })
})

describe('what a row exposes', () => {
  it('never puts a passwordHash (default scope) or a resetToken (liveSync.exclude) on the wire', async () => {
    const client = await connectAs('orgs=1')
    await client.request({ type: 'sub', key: 1 }, frameOf('subscribed'))
    const [user] = await db.sql<{ id: number }>(`INSERT INTO users (organization_id, email, password_hash, reset_token)
      VALUES (1, 'ada@example.test', 'scrypt$secret-hash-1', 'reset-token-1') RETURNING id`)
    const inserted = await client.next(frameOf('tx', frame => frame.changes.some(change => change.model === 'User')))
    await db.sql(`UPDATE users SET password_hash = 'scrypt$secret-hash-2', reset_token = 'reset-token-2', email = 'ada@lovelace.test', updated_at = now() WHERE id = $1`, [user!.id])
    const updated = await client.next(frameOf('tx', frame => frame.changes.some(change => change.model === 'User' && change.op === 'update')))
    await db.sql('DELETE FROM users WHERE id = $1', [user!.id])
    const deleted = await client.next(frameOf('tx', frame => frame.changes.some(change => change.model === 'User' && change.op === 'delete')))

    // The row is the app's own JSON of the user (default scope) without what liveSync.exclude names.
    expect(inserted.changes).toEqual([{ op: 'insert', model: 'User', id: user!.id, row: expect.objectContaining({ id: user!.id, organizationId: 1, email: 'ada@example.test' }) }])
    expect(Object.keys(inserted.changes[0]!.row).sort()).toEqual(['createdAt', 'email', 'id', 'organizationId', 'updatedAt'])
    expect(updated.changes[0]!.row).toMatchObject({ email: 'ada@lovelace.test' })
    expect(deleted.changes[0]!.row).toMatchObject({ id: user!.id })
    const wire = JSON.stringify(client.frames)
    for (const secret of ['secret-hash', 'reset-token', 'passwordHash', 'password_hash', 'resetToken', 'reset_token']) expect(wire).not.toContain(secret)
    await client.close()
  })

  it('sends the same row the app\'s own API serves, minus liveSync.exclude', async () => {
    const client = await connectAs('orgs=2')
    await client.request({ type: 'sub', key: 2 }, frameOf('subscribed'))
    const [user] = await db.sql<{ id: number }>(`INSERT INTO users (organization_id, email, password_hash, reset_token)
      VALUES (2, 'grace@example.test', 'scrypt$secret-hash-3', 'reset-token-3') RETURNING id`)
    const tx = await client.next(frameOf('tx', frame => frame.changes.some(change => change.model === 'User')))
    const { resetToken, ...api } = await $fetch<Record<string, unknown>>(`/api/users/${user!.id}`)
    expect(api).not.toHaveProperty('passwordHash')
    expect(resetToken).toBe('reset-token-3')
    expect(tx.changes[0]!.row).toEqual(api)
    await client.close()
  })
})
