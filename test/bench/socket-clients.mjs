/**
 * A benchmark client process (forked by run.mjs): opens WebSockets to the
 * live sync server (or to the trigger + NOTIFY comparison server, which
 * speaks the same frames), subscribes each to a key and records when each
 * row arrived, on the machine-wide monotonic clock. Rows carry their
 * sequence number in `title` (`s<seq>`). Driven over IPC:
 *
 *   { cmd: 'open', url, keys: [k, …], subscribe }  → { opened, failed }
 *   { cmd: 'collect' }  → { arrivals: [seq, ms, …], frames, rows, txs, cpuMs, closed }
 *   { cmd: 'close' }    → exits
 */
import WebSocket from 'ws'

const nowMs = () => Number(process.hrtime.bigint()) / 1e6
const SEQ = /"title":"s(\d+)"/g

/** @type {WebSocket[]} */
const sockets = []
let arrivals = []
/** Whole transactions received (a chunked one counts at its last part), with their first and last frame times. */
let txs = []
let frames = 0
let rows = 0
let closed = 0
let cpuStart = process.cpuUsage()
/** Per socket, the chunked transaction being assembled. */
const assembling = new WeakMap()

function onFrame(socket, data) {
  const t = nowMs()
  frames++
  const text = data.toString()
  if (!text.startsWith('{"type":"tx"')) return
  // Small frames are only scanned for their rows' sequence numbers (parsing every frame of a
  // 5 000-socket fan-out would measure this process, not the server); parts and large frames are parsed.
  if (data.length < 4096) {
    SEQ.lastIndex = 0
    for (let match = SEQ.exec(text); match; match = SEQ.exec(text)) {
      arrivals.push(Number(match[1]), t)
      rows++
    }
    return
  }
  const message = JSON.parse(text)
  const count = message.changes.length
  rows += count
  if (message.part !== undefined) {
    let tx = assembling.get(socket)
    if (message.part === 0 || !tx) assembling.set(socket, (tx = { first: t, rows: 0, parts: 0 }))
    tx.rows += count
    tx.parts++
    if (message.last) {
      txs.push({ first: tx.first, last: t, rows: tx.rows, parts: tx.parts })
      assembling.delete(socket)
    }
    return
  }
  txs.push({ first: t, last: t, rows: count, parts: 1 })
}

/** Opens a socket subscribed to `key`; resolves once subscribed (or false on failure). */
function open(url, key, subscribe) {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: 2 ** 30 })
    const timer = setTimeout(() => resolve(false), 60_000)
    socket.on('message', (data) => {
      if (socket.readyState !== WebSocket.OPEN) return
      const head = data.subarray(0, 24).toString()
      if (head.startsWith('{"type":"hello"')) {
        if (!subscribe) {
          clearTimeout(timer)
          resolve(true)
        }
        else socket.send(JSON.stringify({ type: 'sub', key }))
        return
      }
      if (head.startsWith('{"type":"subscribed"')) {
        clearTimeout(timer)
        resolve(true)
        return
      }
      onFrame(socket, data)
    })
    socket.on('error', () => resolve(false))
    socket.on('close', () => closed++)
    sockets.push(socket)
  })
}

process.on('message', async (/** @type {any} */ message) => {
  if (message.cmd === 'open') {
    let opened = 0
    let failed = 0
    // A few at a time: a burst of thousands of upgrades is not what is measured.
    const keys = [...message.keys]
    const batch = 100
    for (let i = 0; i < keys.length; i += batch) {
      const results = await Promise.all(keys.slice(i, i + batch).map(key => open(message.url, key, message.subscribe !== false)))
      for (const ok of results) ok ? opened++ : failed++
    }
    process.send?.({ opened, failed })
  }
  else if (message.cmd === 'collect') {
    const cpu = process.cpuUsage(cpuStart)
    process.send?.({ arrivals, txs, frames, rows, closed, cpuMs: (cpu.user + cpu.system) / 1000 })
    arrivals = []
    txs = []
    frames = 0
    rows = 0
    cpuStart = process.cpuUsage()
  }
  else if (message.cmd === 'close') {
    for (const socket of sockets) socket.terminate()
    process.exit(0)
  }
})
process.send?.({ ready: true })
