/**
 * The fixture app (test/fixtures/app) as a real, already built Nuxt server
 * (`node .output/server/index.mjs`, started by @nuxt/test-utils), and a small
 * WebSocket client that speaks the live sync protocol to it.
 *
 * With `build: false` test-utils loads no Nuxt instance; `startServer` then
 * runs `<nuxtConfig.nitro.output.dir>/server/index.mjs`, so the output dir
 * test/scripts/prepare.mjs built into must be given explicitly.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { $fetch, getServerLogs, setup, url } from '@nuxt/test-utils/e2e'
import { afterAll } from 'vitest'
import WebSocket from 'ws'
import { compareLsn } from '../../src/runtime/shared/lsn'
import type { ClientMessage, ServerMessage } from '../../src/runtime/shared/protocol'
import { waitFor } from './wait'

export const FIXTURE_DIR = fileURLToPath(new URL('../fixtures/app', import.meta.url))
export const FIXTURE_OUTPUT_DIR = join(FIXTURE_DIR, '.output')

export interface FixtureServerOptions {
  /** The app's DATABASE_URL; null starts it without a database (live sync off). */
  databaseUrl: string | null
  /**
   * Who may subscribe: `public` (default: tests that are not about access
   * control) sets `NUXT_LIVE_SYNC_PUBLIC`; `cookie` registers the fixture's
   * `live-sync:authorize` handler (cookie `orgs=1,2`); `closed` is a
   * production server with neither (every subscription refused).
   */
  access?: 'public' | 'cookie' | 'closed'
  /** More environment for the server process. */
  env?: Record<string, string>
}

const ACCESS_ENV: Record<NonNullable<FixtureServerOptions['access']>, Record<string, string>> = {
  public: { NUXT_LIVE_SYNC_PUBLIC: 'true' },
  cookie: { LIVE_SYNC_FIXTURE_AUTH: 'cookie' },
  closed: {},
}

/**
 * Registers (in the calling test file) the hooks that start the built
 * fixture server before its tests and stop it after them. Call at the top
 * level of the file, after anything whose afterAll must run once the server
 * is gone (vitest runs afterAll hooks in reverse order).
 */
export async function setupFixtureServer(options: FixtureServerOptions): Promise<void> {
  const entry = join(FIXTURE_OUTPUT_DIR, 'server/index.mjs')
  if (!existsSync(entry)) {
    throw new Error(`[e2e] the built fixture app is missing (${entry}); run \`node test/scripts/prepare.mjs\` (npm test does) first.`)
  }
  await setup({
    rootDir: FIXTURE_DIR,
    build: false,
    server: true,
    browser: false,
    nuxtConfig: { nitro: { output: { dir: FIXTURE_OUTPUT_DIR } } },
    env: {
      // '' rather than absent, so a DATABASE_URL of the test runner's own environment cannot leak in.
      DATABASE_URL: options.databaseUrl ?? '',
      NUXT_LIVE_SYNC_PUBLIC: 'false',
      LIVE_SYNC_FIXTURE_AUTH: '',
      ...ACCESS_ENV[options.access ?? 'public'],
      ...options.env,
    },
  })
  // Registered after setup's own afterAll, so it runs before the server is stopped.
  afterAll(closeAllClients)
}

/** What the fixture's /api/test-support/live-sync says. */
export interface LiveSyncServerState {
  status: string
  cursor: string | null
  /** The server process (to read its memory from /proc). */
  pid: number
  stats: { sockets: number, refusedOrigins: number, slowConsumers: number, tooManyFrames: number, framesTooLarge: number }
  /** Sockets subscribed to the `key` asked about. */
  subscribers: number | null
}

/** The server's live sync state; with `key`, also how many sockets subscribe to it. */
export function liveSyncState(key?: string | number): Promise<LiveSyncServerState> {
  return $fetch<LiveSyncServerState>('/api/test-support/live-sync', { query: key === undefined ? {} : { key: String(key) } })
}

/** Waits until the server has dispatched everything committed up to `lsn` (e.g. `pg_current_wal_lsn()` after a write). */
export async function waitForDispatch(lsn: string, timeout = 10_000): Promise<void> {
  await waitFor(async () => {
    const { cursor } = await liveSyncState()
    return cursor !== null && compareLsn(cursor, lsn) >= 0
  }, { timeout, interval: 20, message: `the server did not dispatch up to ${lsn}` })
}

/** The origin a page of the fixture server has (`http://127.0.0.1:<port>`). */
export function appOrigin(): string {
  return new URL(url('/')).origin
}

export interface UpgradeResult {
  /** 101 when the socket opened, else the HTTP status of the refusal. */
  status: number
  body: string
  /** Frames received before the test closed it (an opened socket gets its hello). */
  frames: string[]
}

/** Tries a WebSocket upgrade with `headers`; says how it was answered, without throwing. */
export function tryUpgrade(headers: Record<string, string>, query = '?v=1', timeout = 10_000): Promise<UpgradeResult> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(liveSyncUrl(query), { headers })
    const frames: string[] = []
    const timer = setTimeout(() => {
      socket.terminate()
      reject(new Error(`[e2e] the upgrade with ${JSON.stringify(headers)} got no answer within ${timeout} ms`))
    }, timeout)
    socket.on('unexpected-response', (_request, response) => {
      let body = ''
      response.on('data', (chunk: Buffer) => (body += chunk.toString()))
      response.on('end', () => {
        clearTimeout(timer)
        resolve({ status: response.statusCode ?? 0, body, frames })
      })
    })
    socket.on('message', (data) => {
      frames.push(data.toString())
      // The hello is the first frame: enough to know the socket works.
      clearTimeout(timer)
      socket.close()
      resolve({ status: 101, body: '', frames })
    })
    socket.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}

/** Waits until the server's replication engine streams (so page cursors and hellos carry a position). */
export async function waitForLiveSync(timeout = 20_000): Promise<LiveSyncServerState> {
  let last: unknown
  try {
    return await waitFor(async () => {
      const state = await liveSyncState()
      last = state
      return state.status === 'streaming' && state.cursor ? state : null
    }, { timeout, interval: 50 })
  }
  catch (error) {
    throw new Error(`[e2e] the live sync engine did not start streaming within ${timeout} ms (last state ${JSON.stringify(last)}); server output:\n${serverOutput()}`, { cause: error })
  }
}

/** The server process's captured output (stdout and stderr, one entry a line). */
export function serverLogs(): string[] {
  return getServerLogs()
}

function serverOutput(): string {
  try {
    return getServerLogs().slice(-40).join('\n')
  }
  catch {
    return '(none)'
  }
}

let markers = 0
/**
 * Has the server print a marker on stdout and on stderr and waits for both in
 * the captured output: everything it printed before is captured by then.
 */
export async function flushServerLogs(timeout = 10_000): Promise<string[]> {
  const id = `${process.pid}-${++markers}`
  await $fetch('/api/test-support/marker', { query: { id } })
  await waitFor(() => {
    const logs = getServerLogs()
    return logs.includes(`[e2e-marker] ${id} stdout`) && logs.includes(`[e2e-marker] ${id} stderr`)
  }, { timeout, message: `the server's marker ${id} did not show up in its output` })
  return getServerLogs().filter(line => !line.startsWith('[e2e-marker] '))
}

/** ws://…/_live_sync on the running fixture server. */
export function liveSyncUrl(query = ''): string {
  return url(`/_live_sync${query}`).replace(/^http/, 'ws')
}

// ── WebSocket test client ───────────────────────────────────────────────────

export type FrameOfType<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>
export type FramePredicate<M extends ServerMessage = ServerMessage> = ((frame: ServerMessage) => frame is M) | ((frame: ServerMessage) => boolean)

/** A predicate for frames of `type` (optionally also matching `where`), typed for `next`. */
export function frameOf<T extends ServerMessage['type']>(type: T, where?: (frame: FrameOfType<T>) => boolean): (frame: ServerMessage) => frame is FrameOfType<T> {
  return (frame): frame is FrameOfType<T> => frame.type === type && (!where || where(frame as FrameOfType<T>))
}

interface Waiter {
  predicate: (frame: ServerMessage) => boolean
  resolve: (frame: ServerMessage) => void
}

const openClients = new Set<LiveSyncTestClient>()

/** Closes every test client still open (registered by setupFixtureServer). */
export async function closeAllClients(): Promise<void> {
  await Promise.all([...openClients].map(client => client.close()))
}

/**
 * Collects every frame the server sends. `next(predicate)` takes frames
 * selectively, in arrival order: it resolves with the oldest frame matching
 * the predicate that no earlier `next` took, waiting for one up to a deadline.
 */
export class LiveSyncTestClient {
  /** Every frame received, in order. */
  readonly frames: ServerMessage[] = []
  /** Frames that were not JSON objects (a protocol bug if any). */
  readonly invalid: string[] = []
  /** Resolves with the close code and reason once the socket closed. */
  readonly closed: Promise<{ code: number, reason: string }>
  private readonly taken = new Set<number>()
  private readonly waiters = new Set<Waiter>()

  private constructor(readonly socket: WebSocket, readonly url: string) {
    this.closed = new Promise((resolve) => {
      socket.on('close', (code, reason) => {
        openClients.delete(this)
        resolve({ code, reason: reason.toString() })
      })
    })
    socket.on('message', (data, isBinary) => {
      const text = isBinary ? '' : data.toString()
      let frame: unknown
      try {
        frame = JSON.parse(text)
      }
      catch {
        this.invalid.push(text)
        return
      }
      if (!frame || typeof frame !== 'object' || Array.isArray(frame)) {
        this.invalid.push(text)
        return
      }
      this.frames.push(frame as ServerMessage)
      this.offer(this.frames.length - 1)
    })
  }

  /**
   * Opens a socket to the fixture server's live sync route (`query` such as
   * '?v=1'); `options` are the `ws` client's (headers such as Origin or Cookie).
   */
  static async connect(query = '?v=1', timeout = 10_000, options: WebSocket.ClientOptions = {}): Promise<LiveSyncTestClient> {
    const address = liveSyncUrl(query)
    const socket = new WebSocket(address, options)
    const client = new LiveSyncTestClient(socket, address)
    openClients.add(client)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`[e2e] WebSocket ${address} did not open within ${timeout} ms`)), timeout)
      socket.once('open', () => {
        clearTimeout(timer)
        resolve()
      })
      socket.once('error', (error) => {
        clearTimeout(timer)
        reject(new Error(`[e2e] WebSocket ${address} failed to open: ${error.message}`))
      })
    })
    socket.on('error', () => {}) // surfaces as a close
    return client
  }

  /** A socket that got its hello (`options`: the `ws` client's, e.g. headers). */
  static async greeted(options: WebSocket.ClientOptions = {}): Promise<LiveSyncTestClient> {
    const client = await LiveSyncTestClient.connect('?v=1', 10_000, options)
    await client.next(frameOf('hello'))
    return client
  }

  /** Sends a protocol message (or, for malformed-frame tests, any raw text). */
  send(message: ClientMessage | string): void {
    this.socket.send(typeof message === 'string' ? message : JSON.stringify(message))
  }

  /** The oldest frame not taken yet that matches, waiting for it up to `timeout` ms. */
  next<M extends ServerMessage>(predicate: (frame: ServerMessage) => frame is M, timeout?: number): Promise<M>
  next(predicate: (frame: ServerMessage) => boolean, timeout?: number): Promise<ServerMessage>
  next(predicate: (frame: ServerMessage) => boolean, timeout = 10_000): Promise<ServerMessage> {
    for (let i = 0; i < this.frames.length; i++) {
      if (!this.taken.has(i) && predicate(this.frames[i]!)) {
        this.taken.add(i)
        return Promise.resolve(this.frames[i]!)
      }
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve: (frame) => {
          clearTimeout(timer)
          resolve(frame)
        },
      }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        reject(new Error(`[e2e] no matching frame within ${timeout} ms (${predicate.toString().slice(0, 200)}); received so far:\n${this.describe()}`))
      }, timeout)
      this.waiters.add(waiter)
    })
  }

  /** Sends `message` and waits for the next frame matching `predicate`. */
  request<M extends ServerMessage>(message: ClientMessage | string, predicate: (frame: ServerMessage) => frame is M, timeout?: number): Promise<M> {
    const answer = this.next(predicate, timeout)
    this.send(message)
    return answer
  }

  /** Every frame received so far that matches (taken or not). */
  received<M extends ServerMessage>(predicate: (frame: ServerMessage) => frame is M): M[]
  received(predicate: (frame: ServerMessage) => boolean): ServerMessage[]
  received(predicate: (frame: ServerMessage) => boolean): ServerMessage[] {
    return this.frames.filter(frame => predicate(frame))
  }

  /** Closes the socket and waits until it is closed. */
  async close(): Promise<void> {
    if (this.socket.readyState === WebSocket.CLOSED) return
    if (this.socket.readyState !== WebSocket.CLOSING) this.socket.close(1000, 'test done')
    const timer = setTimeout(() => this.socket.terminate(), 2_000)
    await this.closed
    clearTimeout(timer)
  }

  describe(): string {
    const lines = this.frames.map((frame, i) => `${this.taken.has(i) ? '  taken ' : '        '}${JSON.stringify(frame).slice(0, 300)}`)
    return lines.length ? lines.join('\n') : '  (nothing)'
  }

  private offer(index: number): void {
    const frame = this.frames[index]!
    for (const waiter of this.waiters) {
      if (!waiter.predicate(frame)) continue
      this.waiters.delete(waiter)
      this.taken.add(index)
      waiter.resolve(frame)
      return
    }
  }
}
