#!/usr/bin/env node
/**
 * When does any consumer of logical replication hear of a large
 * transaction? Postgres's own `pg_recvlogical` (no work of its own: the
 * floor) reads a publication while one transaction inserts N rows
 * (default 1 000 000); printed: when its first and last bytes arrived after
 * COMMIT returned (and when its walsender reached the COMMIT), for pgoutput protocol 1 with the server's
 * `logical_decoding_work_mem` (64MB) and with the 4MB live sync sets, and
 * for protocol 2 streaming the transaction while it runs (whose commit
 * message comes after its last row). Why `decodingWorkMem` exists, and why
 * protocol 2 is not used. `node test/bench/decoding-first-row.mjs [rows] [rounds]`
 */
import pg from 'pg'
import { startPostgres } from '../support/postgres.mjs'
import { findRecvlogical, fmt, nowMs, sleep, startRecvlogical, watchWalsender } from './support.mjs'

const ROWS = Number(process.argv[2] ?? 1_000_000)
const ROUNDS = Number(process.argv[3] ?? 2)
const VARIANTS = [
  { name: 'protocol 1, logical_decoding_work_mem 64MB (the server\'s default)', options: ['proto_version=1'], workMem: '64MB' },
  { name: 'protocol 1, logical_decoding_work_mem 4MB (live sync\'s default)', options: ['proto_version=1'], workMem: '4MB' },
  { name: 'protocol 2, streaming=on, 4MB (commit after the last row)', options: ['proto_version=2', 'streaming=on'], workMem: '4MB' },
]

const binary = findRecvlogical()
if (!binary) throw new Error('[bench] pg_recvlogical is not on the PATH (Debian: apt install postgresql-client)')
const postgres = await startPostgres({ sources: ['env', 'system', 'embedded'], log: () => {} })
const client = new pg.Client(postgres.url)
await client.connect()
try {
  await client.query('DROP TABLE IF EXISTS decoding_first_row; CREATE TABLE decoding_first_row (id serial PRIMARY KEY, org integer, title text)')
  await client.query('DROP PUBLICATION IF EXISTS decoding_first_row; CREATE PUBLICATION decoding_first_row FOR TABLE decoding_first_row')
  const results = new Map(VARIANTS.map(variant => [variant.name, /** @type {Array<{ first: number, last: number, reached: number }>} */ ([])]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const variant of VARIANTS) results.get(variant.name)?.push(await measure(variant))
  }
  console.log(`\n${fmt(ROWS, 0)}-row transaction, pg_recvlogical alone; ms after COMMIT returned (${ROUNDS} rounds)\n`)
  console.log('| variant | walsender reached the COMMIT | first byte | last byte |\n|---|---|---|---|')
  const column = (list, key) => list.map(r => fmt(r[key], 0)).join(', ')
  for (const [name, list] of results) console.log(`| ${name} | ${column(list, 'reached')} | ${column(list, 'first')} | ${column(list, 'last')} |`)
}
finally {
  await client.query('DROP TABLE IF EXISTS decoding_first_row; DROP PUBLICATION IF EXISTS decoding_first_row').catch(() => {})
  await client.end()
  await postgres.stop()
}

/** One transaction of ROWS rows read by pg_recvlogical with `variant`'s options: its first and last bytes after COMMIT. */
async function measure(variant) {
  let bytes = 0
  let first = 0
  let last = 0
  const consumer = await startRecvlogical(binary, postgres.url, client, {
    publication: 'decoding_first_row',
    options: variant.options,
    env: { PGOPTIONS: `-c logical_decoding_work_mem=${variant.workMem}` },
    onData: (at, size) => {
      bytes += size
      last = at
      first ||= at
    },
  })
  try {
    const walsender = await watchWalsender(postgres.url)
    await client.query('BEGIN')
    await client.query(`INSERT INTO decoding_first_row (org, title) SELECT 1, 'row ' || n FROM generate_series(1, $1) n`, [ROWS])
    const { rows: [{ lsn }] } = await client.query('SELECT pg_current_wal_insert_lsn()::text AS lsn')
    // Protocol 2 sends rows before the commit: what counts is after it.
    first = 0
    await client.query('COMMIT')
    const committed = nowMs()
    const { reachedAt } = await walsender.reaches(lsn)
    await walsender.close()
    // Until the output stops growing (it has no framing to tell the commit by).
    for (let seen = -1; seen !== bytes;) {
      seen = bytes
      await sleep(1000)
    }
    return { first: first - committed, last: last - committed, reached: reachedAt - committed }
  }
  finally {
    await consumer.stop()
  }
}
