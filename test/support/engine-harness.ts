/**
 * A real database and a running engine for engine-level tests: each test
 * file gets its own database on the run's PostgreSQL, its tables and models,
 * the live sync migration, and helpers to collect what subscribers receive.
 */
import { inject } from 'vitest'
import pg from 'pg'
import { Sequelize } from 'sequelize'
import { createDatabase, dropDatabase } from './postgres.mjs'
import { waitFor } from './wait'
import { up } from '../../src/migration'
import { createLiveSyncEngine, type LiveSyncEngine, type LiveSyncEngineOptions } from '../../src/runtime/server/engine/live-sync-engine'
import type { Delivery, KeyBatch, ResyncNotice } from '../../src/runtime/server/engine/key-batch'
import type { Change, KeyValue } from '../../src/runtime/shared/protocol'

export interface CapturedLogs {
  info: string[]
  warn: string[]
  error: string[]
  debug: string[]
}

export function captureLogger(): CapturedLogs & { logger: LiveSyncEngineOptions['logger'] } {
  const logs: CapturedLogs = { info: [], warn: [], error: [], debug: [] }
  return {
    ...logs,
    logger: {
      info: message => logs.info.push(message),
      warn: message => logs.warn.push(message),
      error: message => logs.error.push(message),
      debug: message => logs.debug.push(message),
    },
  }
}

/** What one subscriber of a key received, with waits on it. */
export class Collector {
  readonly deliveries: Delivery[] = []
  readonly receive = (delivery: Delivery) => {
    this.deliveries.push(delivery)
  }

  get batches(): KeyBatch[] {
    return this.deliveries.filter((d): d is KeyBatch => d.type === 'tx')
  }

  get resyncs(): ResyncNotice[] {
    return this.deliveries.filter((d): d is ResyncNotice => d.type === 'resync')
  }

  get changes(): Change[] {
    return this.batches.flatMap(batch => batch.changes)
  }

  /** Waits until at least `count` changes arrived. */
  async changeCount(count: number, timeout = 10_000): Promise<Change[]> {
    await waitFor(() => this.changes.length >= count, { timeout, message: `expected ${count} changes, have ${this.changes.length}` })
    return this.changes
  }

  async batchCount(count: number, timeout = 10_000): Promise<KeyBatch[]> {
    await waitFor(() => this.batches.length >= count, { timeout, message: `expected ${count} batches, have ${this.batches.length}` })
    return this.batches
  }
}

export interface Harness {
  url: string
  sequelize: Sequelize
  engine: LiveSyncEngine
  logs: CapturedLogs
  /** Subscribes a new collector to `key`. */
  collect: (key: KeyValue) => Collector
  /** One statement on a plain connection of the test's own (a writer outside the app). */
  sql: (text: string, values?: unknown[]) => Promise<pg.QueryResult>
  /** A marker transaction on `key`'s table: when it arrives, everything committed before it has. */
  close: () => Promise<void>
}

export interface HarnessOptions {
  /** Database name (unique per test file). */
  name: string
  /** SQL run before the models are defined. */
  schema: string
  /** Defines the models on the given Sequelize instance. */
  models: (sequelize: Sequelize) => void
  /** Tables for the publication; all when omitted. */
  tables?: string[]
  engine?: Partial<LiveSyncEngineOptions>
}

export async function startHarness(options: HarnessOptions): Promise<Harness> {
  const adminUrl = inject('pgAdminUrl')
  const url = await createDatabase(adminUrl, options.name)
  const sequelize = new Sequelize(url, { logging: false })
  await sequelize.query(options.schema)
  options.models(sequelize)
  await up(sequelize.getQueryInterface(), options.tables)
  const captured = captureLogger()
  const engine = createLiveSyncEngine({ sequelize, logger: captured.logger, ...options.engine })
  await engine.start()
  if (engine.status !== 'streaming') throw new Error(`engine did not start: ${engine.lastError?.message}`)
  const unsubscribes: Array<() => void> = []
  let writer: Promise<pg.Client> | null = null
  return {
    url,
    sequelize,
    engine,
    logs: captured,
    collect(key) {
      const collector = new Collector()
      unsubscribes.push(engine.subscribe(key, collector.receive).unsubscribe)
      return collector
    },
    async sql(text, values) {
      writer ??= (async () => {
        const client = new pg.Client(url)
        await client.connect()
        return client
      })()
      return (await writer).query(text, values)
    },
    async close() {
      for (const unsubscribe of unsubscribes) unsubscribe()
      await (await writer)?.end()
      await engine.stop()
      await sequelize.close()
      await dropDatabase(adminUrl, options.name)
    },
  }
}

/** JSON of a row loaded through Sequelize: the contract live rows must equal. */
export function modelJSON(instance: unknown): unknown {
  return JSON.parse(JSON.stringify(instance))
}

export { prng } from './prng'
