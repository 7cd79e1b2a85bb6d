/**
 * A Nuxt app under `nuxi dev` (what a developer runs), for the tests of what
 * exists only in development (the Nuxt DevTools tab). Started in its own
 * process group and stopped by its process id; its output is kept.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import { freePort } from './postgres.mjs'
import { waitFor } from './wait'

export interface DevServer {
  /** `http://127.0.0.1:<port>` */
  origin: string
  /** Its output, one entry a line. */
  logs: string[]
  stop: () => Promise<void>
}

const require = createRequire(import.meta.url)

/** This process's environment without vitest's variables (Nuxt DevTools turns itself off under VITEST or TEST). */
function developerEnvironment(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('VITEST') && name !== 'TEST'))
}

/** Runs `nuxi dev <rootDir>` with `env` and waits until it serves `/` (the first build can take a while on a busy machine). */
export async function startDevServer(rootDir: string, env: Record<string, string>, timeout = 180_000): Promise<DevServer> {
  const port = await freePort()
  const origin = `http://127.0.0.1:${port}`
  const logs: string[] = []
  const child: ChildProcess = spawn(process.execPath, [require.resolve('@nuxt/cli/cli'), 'dev', rootDir, '--host', '127.0.0.1', '--port', String(port)], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...developerEnvironment(), NODE_ENV: 'development', NUXT_TELEMETRY_DISABLED: '1', ...env },
  })
  for (const stream of [child.stdout!, child.stderr!]) {
    let rest = ''
    stream.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString()).split('\n')
      rest = lines.pop()!
      logs.push(...lines)
    })
  }
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    // The whole group: `nuxi dev` runs Nuxt in a forked child.
    try {
      process.kill(-child.pid!, 'SIGTERM')
    }
    catch {
      return
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      }
      catch { /* gone */ }
    }, 10_000)
    await exited
    clearTimeout(timer)
  }
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`nuxi dev exited with ${child.exitCode}`)
      const response = await fetch(`${origin}/`, { signal: AbortSignal.timeout(60_000) })
      await response.arrayBuffer()
      return response.ok
    }, { timeout, interval: 500, message: `nuxi dev ${rootDir} did not serve / ` })
  }
  catch (error) {
    await stop()
    throw new Error(`${(error as Error).message}\n${logs.slice(-40).join('\n')}`, { cause: error })
  }
  return { origin, logs, stop }
}
