/**
 * Several instances of the built fixture app in cluster mode, for the
 * cluster tests and the bench: each a `node .output/server/index.mjs`
 * process on its own port with NUXT_LIVE_SYNC_REDIS_URL set, a small TCP
 * round-robin proxy in front of them (as a load balancer would be), and a
 * WebSocket client that keeps each key's rows the way a page does
 * (snapshot, then changes on top), to compare with the database.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { compareLsn } from '../../src/runtime/shared/lsn'
import type { ServerMessage } from '../../src/runtime/shared/protocol'
import { freePort } from './postgres.mjs'
import { waitFor } from './wait'

const ENTRY = join(fileURLToPath(new URL('../fixtures/app/.output', import.meta.url)), 'server/index.mjs')

/** What /api/test-support/live-sync says of one instance. */
export interface InstanceState {
  status: string
  cursor: string | null
  epoch: string
  role: 'leader' | 'follower' | 'single' | 'off'
  replication: string
  pid: number
  stats: { sockets: number }
}

export interface InstanceOptions {
  databaseUrl: string
  redisUrl: string | null
  slotName: string
  env?: Record<string, string>
}

/** One app process; `start()` again after it was killed brings it back on the same port. */
export class Instance {
  readonly output: string[] = []
  process: ChildProcess | null = null
  private constructor(readonly name: string, readonly port: number, private readonly options: InstanceOptions) {}

  static async create(name: string, options: InstanceOptions): Promise<Instance> {
    if (!existsSync(ENTRY)) throw new Error(`[cluster] the built fixture app is missing (${ENTRY}); run \`node test/scripts/prepare.mjs\` (npm test does) first.`)
    return new Instance(name, await freePort(), options)
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  get pid(): number {
    return this.process?.pid ?? 0
  }

  get running(): boolean {
    return this.process !== null && this.process.exitCode === null && this.process.signalCode === null
  }

  /** Starts the process and waits until it serves live sync (`streaming`). */
  async start(timeout = 30_000): Promise<void> {
    const child = spawn(process.execPath, [ENTRY], {
      env: {
        ...process.env,
        PORT: String(this.port),
        HOST: '127.0.0.1',
        DATABASE_URL: this.options.databaseUrl,
        NUXT_LIVE_SYNC_PUBLIC: 'true',
        // consola logs only warnings under vitest's TEST variable; the tests read the instances' info lines.
        CONSOLA_LEVEL: '3',
        NUXT_LIVE_SYNC_REDIS_URL: this.options.redisUrl ?? '',
        NUXT_LIVE_SYNC_SLOT_NAME: this.options.slotName,
        ...this.options.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.process = child
    const collect = (chunk: Buffer) => this.output.push(...chunk.toString().split('\n').filter(Boolean))
    child.stdout!.on('data', collect)
    child.stderr!.on('data', collect)
    await waitFor(async () => {
      if (!this.running) throw new Error(`exited with ${child.exitCode ?? child.signalCode}`)
      return (await this.state()).status === 'streaming'
    }, { timeout, interval: 50, message: `[cluster] instance ${this.name} did not serve live sync; output:\n${this.output.slice(-30).join('\n')}\n` })
  }

  async state(): Promise<InstanceState> {
    const response = await fetch(`${this.url}/api/test-support/live-sync`)
    if (!response.ok) throw new Error(`[cluster] ${this.name}: HTTP ${response.status}`)
    return await response.json() as InstanceState
  }

  /** Sends `signal` and waits for the process to exit. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    const child = this.process
    if (!child || !this.running) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill(signal)
    await exited
  }

  /** Lines of its output matching `pattern`. */
  printed(pattern: RegExp): string[] {
    return this.output.filter(line => pattern.test(line))
  }
}

/** The one instance that leads and streams, once there is exactly one. */
export async function leaderOf(instances: Instance[], timeout = 20_000): Promise<Instance> {
  let states: Array<InstanceState | string> = []
  return waitFor(async () => {
    states = await Promise.all(instances.map(instance => instance.state().catch((error: Error) => error.message)))
    const leaders = instances.filter((_, i) => typeof states[i] !== 'string' && (states[i] as InstanceState).role === 'leader' && (states[i] as InstanceState).replication === 'streaming')
    return leaders.length === 1 ? leaders[0] : null
  }, { timeout, interval: 20, message: `[cluster] no single streaming leader (states: ${JSON.stringify(states)})` })
}

/**
 * A TCP round-robin proxy: each new connection goes to the next backend
 * that accepts it, as a load balancer spreads tabs over instances.
 */
export async function startProxy(backends: () => number[]): Promise<{ port: number, close: () => Promise<void> }> {
  let next = 0
  const open = new Set<net.Socket>()
  const server = net.createServer((client) => {
    open.add(client)
    client.on('close', () => open.delete(client))
    client.on('error', () => {})
    client.pause()
    const targets = backends()
    const attempt = (tries: number) => {
      if (tries >= targets.length || client.destroyed) return client.destroy()
      const upstream = net.connect(targets[next++ % targets.length]!, '127.0.0.1')
      let connected = false
      upstream.once('connect', () => {
        connected = true
        open.add(upstream)
        client.pipe(upstream)
        upstream.pipe(client)
        client.resume()
      })
      upstream.on('error', () => {
        if (!connected) attempt(tries + 1)
      })
      upstream.on('close', () => {
        open.delete(upstream)
        if (connected) client.destroy()
      })
      client.on('close', () => upstream.destroy())
    }
    attempt(0)
  })
  const port = await freePort()
  await new Promise<void>(resolve => server.listen(port, '127.0.0.1', resolve))
  return {
    port,
    async close() {
      for (const socket of open) socket.destroy()
      await new Promise(resolve => server.close(resolve))
    },
  }
}

interface Row { id: number, title: string, done: boolean }

/**
 * A protocol client on one instance that keeps each subscribed key's rows
 * as a page without `refresh` does: a snapshot, the key's `tx` frames after
 * its cursor on top, and a new snapshot after a `resync`.
 */
export class RowsClient {
  readonly frames: ServerMessage[] = []
  readonly rows = new Map<string, Map<number, Row>>()
  private readonly held = new Map<string, Array<ServerMessage & { type: 'tx' }>>()
  private readonly snapshots = new Map<number, { key: string, rows: Row[] }>()
  private ref = 0

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', data => this.receive(JSON.parse(data.toString()) as ServerMessage))
    socket.on('error', () => {})
  }

  static async connect(url: string, keys: number[]): Promise<RowsClient> {
    const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/_live_sync?v=1`)
    const client = new RowsClient(socket)
    await new Promise((resolve, reject) => {
      socket.once('open', resolve)
      socket.once('error', reject)
    })
    for (const key of keys) socket.send(JSON.stringify({ type: 'sub', key }))
    await waitFor(() => keys.every(key => client.rows.has(String(key))), { timeout: 20_000, message: `[cluster] ${url}: the keys' snapshots did not arrive` })
    return client
  }

  /** Frames of a type received so far. */
  received<T extends ServerMessage['type']>(type: T): Array<Extract<ServerMessage, { type: T }>> {
    return this.frames.filter(frame => frame.type === type) as Array<Extract<ServerMessage, { type: T }>>
  }

  /** A key's rows by id, as the database would list them. */
  rowsOf(key: number): Row[] {
    return [...(this.rows.get(String(key))?.values() ?? [])].sort((a, b) => a.id - b.id)
  }

  close(): void {
    this.socket.close()
  }

  private snapshot(key: string): void {
    this.held.set(key, [])
    const ref = ++this.ref
    this.snapshots.set(ref, { key, rows: [] })
    this.socket.send(JSON.stringify({ type: 'snapshot', key, models: [{ model: 'Task' }], ref }))
  }

  private receive(frame: ServerMessage): void {
    this.frames.push(frame)
    switch (frame.type) {
      case 'subscribed':
        return this.snapshot(frame.key)
      case 'resync':
        return this.snapshot(frame.key)
      case 'snapshot':
        this.snapshots.get(frame.ref)?.rows.push(...(frame.rows as unknown as Row[]))
        return
      case 'snapshotted': {
        const taken = this.snapshots.get(frame.ref)
        if (!taken) return
        this.snapshots.delete(frame.ref)
        this.rows.set(taken.key, new Map(taken.rows.map(row => [row.id, pick(row)])))
        const held = this.held.get(taken.key) ?? []
        this.held.delete(taken.key)
        for (const tx of held) if (!frame.cursor || compareLsn(tx.cursor, frame.cursor) > 0) this.apply(tx)
        return
      }
      case 'tx': {
        const held = this.held.get(frame.key)
        if (held) held.push(frame)
        else this.apply(frame)
      }
    }
  }

  private apply(tx: ServerMessage & { type: 'tx' }): void {
    const rows = this.rows.get(tx.key)
    if (!rows) return
    for (const change of tx.changes) {
      const row = change.row as unknown as Row
      if (change.model !== 'Task') continue
      if (change.op === 'delete') rows.delete(row.id)
      else rows.set(row.id, pick(row))
    }
  }
}

function pick(row: Row): Row {
  return { id: row.id, title: row.title, done: row.done }
}
