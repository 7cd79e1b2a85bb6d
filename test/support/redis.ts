/**
 * A throwaway Redis for the cluster tests, like the PostgreSQL of
 * postgres.mjs: the machine's `redis-server` (REDIS_SERVER_PATH, default
 * /usr/bin/redis-server) on a free loopback port, without persistence,
 * stopped by its PID. `restart()` stops it and starts a new one on the same
 * port: an empty Redis, as after a crash of one that keeps no data.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { Redis } from 'ioredis'
import { freePort } from './postgres.mjs'
import { waitFor } from './wait'

export const REDIS_SERVER_PATH = process.env.REDIS_SERVER_PATH || '/usr/bin/redis-server'

export interface RunningRedis {
  url: string
  port: number
  /** The server's PID. */
  pid: () => number
  /** Stops it (SIGTERM, then SIGKILL after 5 s) and waits for the exit; `start()` brings it back. */
  stop: () => Promise<void>
  /** Starts it again on the same port (empty). */
  start: () => Promise<void>
  /** A client for the test's own reads (closed by `close()`). */
  client: () => Redis
  /** Stops the server for good and closes the test's clients. */
  close: () => Promise<void>
}

export async function startRedis(): Promise<RunningRedis> {
  if (!existsSync(REDIS_SERVER_PATH)) {
    throw new Error(`[test-redis] redis-server is not installed at ${REDIS_SERVER_PATH}, so the cluster tests cannot run (they fail rather than skip). Install it with \`apt-get install -y redis-server\`, or point REDIS_SERVER_PATH at one.`)
  }
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  let child: ChildProcess | null = null
  let output = ''
  const clients: Redis[] = []

  async function start(): Promise<void> {
    output = ''
    const started = spawn(REDIS_SERVER_PATH, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
    child = started
    started.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
    started.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    probe.on('error', () => {})
    try {
      await waitFor(async () => {
        if (started.exitCode !== null) throw new Error(`redis-server exited (${started.exitCode}): ${output}`)
        if (probe.status !== 'ready') await probe.connect().catch(() => {})
        return (await probe.ping()) === 'PONG'
      }, { timeout: 10_000, interval: 50, message: `[test-redis] redis-server on port ${port} did not answer` })
    }
    finally {
      probe.disconnect()
    }
  }

  async function stop(): Promise<void> {
    const running = child
    child = null
    if (!running || running.exitCode !== null) return
    const exited = new Promise(resolve => running.once('exit', resolve))
    running.kill('SIGTERM')
    const timer = setTimeout(() => running.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }

  await start()
  return {
    url,
    port,
    pid: () => child?.pid ?? 0,
    start,
    stop,
    async close() {
      for (const client of clients.splice(0)) client.disconnect()
      await stop()
    },
    client() {
      const client = new Redis(url, { maxRetriesPerRequest: 1 })
      client.on('error', () => {})
      clients.push(client)
      return client
    },
  }
}
