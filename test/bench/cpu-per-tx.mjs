#!/usr/bin/env node
/**
 * Server CPU per single-row transaction (the figure issue 11's first target
 * is about): the built fixture server, one subscribed socket in another
 * process, N single-row UPDATEs back to back; the server's utime + stime
 * (from /proc) over them, divided by N. `node test/bench/cpu-per-tx.mjs [N] [rounds] [gap ms]`.
 * With CPU_PROF=dir the server writes a --cpu-prof profile there.
 */
import pg from 'pg'
import { startPostgres } from '../support/postgres.mjs'
import { openClients } from './clients.mjs'
import { cpuMs, cpuSplitMs, fixtureDatabase, fmt, sleep, startServer } from './support.mjs'

const N = Number(process.argv[2] ?? 5000)
const ROUNDS = Number(process.argv[3] ?? 3)
/** Pause between transactions (ms): 0 = back to back (several arrive per read), >0 = each on its own. */
const GAP = Number(process.argv[4] ?? 0)

const postgres = await startPostgres({ sources: ['env', 'system', 'embedded'], log: () => {} })
try {
  const url = await fixtureDatabase(postgres.url, 'live_sync_bench_cpu', 2)
  const writer = new pg.Client(url)
  writer.on('error', () => {})
  await writer.connect()
  const { rows: [task] } = await writer.query(`INSERT INTO tasks (organization_id, title) VALUES (1, 's0') RETURNING id`)
  const args = process.env.CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CPU_PROF}`, '--cpu-prof-interval=100'] : process.env.PERF_MAP ? ['--perf-basic-prof'] : []
  const server = await startServer(url, {}, args, process.env.BENCH_ENTRY || undefined)
  const clients = await openClients(server.wsUrl, [1])
  if (process.env.PERF_MAP) console.log(`server pid ${server.pid}`)
  try {
    let seq = 0
    for (let round = 0; round < ROUNDS; round++) {
      await clients.collect()
      const before = cpuMs(server.pid)
      const split = cpuSplitMs(server.pid)
      const started = performance.now()
      for (let i = 0; i < N; i++) {
        await writer.query('UPDATE tasks SET title = $1 WHERE id = $2', [`s${++seq}`, task.id])
        if (GAP > 0) await sleep(GAP)
      }
      // Until the last one arrived.
      let got = 0
      for (let deadline = Date.now() + 30_000; Date.now() < deadline;) {
        const result = await clients.collect()
        got += result.arrivals.length / 2
        if (got >= N) break
        await sleep(20)
      }
      const elapsed = performance.now() - started
      await sleep(200)
      const used = cpuMs(server.pid) - before
      const after = cpuSplitMs(server.pid)
      console.log(`round ${round + 1}: ${N} single-row transactions in ${fmt(elapsed)} ms (${fmt(N / elapsed * 1000, 0)} tx/s), received ${got}; server CPU ${fmt(used * 1000 / N)} µs per transaction (user ${fmt((after.user - split.user) * 1000 / N)}, system ${fmt((after.system - split.system) * 1000 / N)})`)
    }
  }
  finally {
    await clients.close()
    await server.stop()
    await writer.end()
  }
}
finally {
  await postgres.stop()
}
