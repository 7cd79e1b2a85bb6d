/**
 * Build time: the module imports the app's Sequelize module with jiti and
 * describes its watched models (the fixture app defines them when
 * NUXT_LIVE_SYNC_TYPES is set, without a database); a module that gives no
 * models says why; what the dev server cached is read back.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { loadModelTypes, readCachedModelTypes } from '../../src/model-types'

const FIXTURE_APP = fileURLToPath(new URL('../fixtures/app', import.meta.url))
const here = (file: string) => fileURLToPath(new URL(`./fixtures/${file}`, import.meta.url))
const scratch = mkdtempSync(join(tmpdir(), 'live-sync-model-types-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

describe('model types at build time', () => {
  it('reads the fixture app\'s watched models without a database, and leaves the environment as it was', async () => {
    const before = process.env.NUXT_LIVE_SYNC_TYPES
    const result = await loadModelTypes(join(FIXTURE_APP, 'server/utils/db.ts'), { rootDir: FIXTURE_APP, alias: {} })
    expect(result.problem).toBeUndefined()
    expect(result.models?.map(model => model.name)).toEqual(['Organization', 'Task', 'User', 'Project', 'OpenTodo'])
    const user = result.models!.find(model => model.name === 'User')!
    expect(user.attributes.map(attribute => attribute.name)).toEqual(['id', 'organizationId', 'email', 'createdAt', 'updatedAt'])
    expect(process.env.NUXT_LIVE_SYNC_TYPES).toBe(before)
  })

  it('says why when the module exports no instance or cannot be imported', async () => {
    expect(await loadModelTypes(here('no-instance.ts'), { rootDir: scratch, alias: {} })).toMatchObject({ models: null, problem: 'it exported no Sequelize instance' })
    expect(await loadModelTypes(here('throws.ts'), { rootDir: scratch, alias: {} })).toMatchObject({ models: null, problem: expect.stringContaining('DATABASE_URL is required') })
  })

  it('reads back what the dev server cached, and nothing from a broken cache', () => {
    const file = join(scratch, 'models.json')
    expect(readCachedModelTypes(file)).toBeNull()
    writeFileSync(file, JSON.stringify({ writtenAt: 5, models: [{ name: 'Task', attributes: [{ name: 'id', type: 'number', nullable: false }] }] }))
    expect(readCachedModelTypes(file)).toEqual({ writtenAt: 5, models: [{ name: 'Task', attributes: [{ name: 'id', type: 'number', nullable: false }] }] })
    writeFileSync(file, '{ not json')
    expect(readCachedModelTypes(file)).toBeNull()
  })
})
