/**
 * Benchmark clients in their own processes (socket-clients.mjs), so that
 * what the server and the clients cost is measured apart.
 */
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const CLIENT = fileURLToPath(new URL('./socket-clients.mjs', import.meta.url))

/** One forked client process. */
function client() {
  const child = fork(CLIENT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  /** @type {Array<(message: any) => void>} */
  const waiting = []
  child.on('message', (message) => {
    if (/** @type {any} */ (message).ready) return
    waiting.shift()?.(message)
  })
  const ready = new Promise(resolve => child.once('message', resolve))
  const ask = (message) => {
    const answer = new Promise(resolve => waiting.push(resolve))
    child.send(message)
    return answer
  }
  return { child, ready, ask }
}

/**
 * `processes` client processes holding one socket per entry of `keys`
 * (spread round-robin), subscribed to that key.
 */
export async function openClients(url, keys, { processes = 1, subscribe = true } = {}) {
  const clients = Array.from({ length: processes }, client)
  await Promise.all(clients.map(c => c.ready))
  const shares = clients.map(() => /** @type {Array<string|number>} */ ([]))
  keys.forEach((key, i) => shares[i % processes].push(key))
  const results = await Promise.all(clients.map((c, i) => c.ask({ cmd: 'open', url, keys: shares[i], subscribe })))
  const opened = results.reduce((sum, r) => sum + r.opened, 0)
  const failed = results.reduce((sum, r) => sum + r.failed, 0)
  return {
    opened,
    failed,
    pids: clients.map(c => c.child.pid),
    /** What every process recorded since the last collect, merged; cpuMs summed. */
    async collect() {
      const parts = await Promise.all(clients.map(c => c.ask({ cmd: 'collect' })))
      const arrivals = []
      for (const part of parts) for (const value of part.arrivals) arrivals.push(value)
      return {
        arrivals,
        txs: parts.flatMap(part => part.txs),
        frames: parts.reduce((sum, p) => sum + p.frames, 0),
        rows: parts.reduce((sum, p) => sum + p.rows, 0),
        closed: parts.reduce((sum, p) => sum + p.closed, 0),
        cpuMs: parts.reduce((sum, p) => sum + p.cpuMs, 0),
      }
    },
    async close() {
      await Promise.all(clients.map(async (c) => {
        const exited = new Promise(resolve => c.child.once('exit', resolve))
        c.child.send({ cmd: 'close' })
        await exited
      }))
    },
  }
}
