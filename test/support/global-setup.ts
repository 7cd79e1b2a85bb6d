import type {} from './vitest-provide'
import type { TestProject } from 'vitest/node'
import { startPostgres } from './postgres.mjs'

// One cluster for the whole run; test files create their own databases on it with createDatabase().
export default async function setup(project: TestProject) {
  const server = await startPostgres()
  project.provide('pgAdminUrl', server.url)
  project.provide('pgSource', server.source)
  return async () => {
    await server.stop()
  }
}
