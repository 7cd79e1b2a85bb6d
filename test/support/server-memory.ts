/**
 * The fixture server's memory as the operating system sees it (VmRSS of its
 * process, from /proc), and a full garbage collection in it (the server runs
 * with NODE_OPTIONS=--expose-gc) so that what is measured is what is held.
 */
import { readFile } from 'node:fs/promises'
import { $fetch } from '@nuxt/test-utils/e2e'

export const MiB = 1024 * 1024

/** Environment that lets /api/test-support/gc collect garbage. */
export const GC_ENV = { NODE_OPTIONS: '--expose-gc' }

/** Resident memory of process `pid`, in bytes. */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status)
  if (!match) throw new Error(`[e2e] no VmRSS in /proc/${pid}/status`)
  return Number(match[1]) * 1024
}

export interface ServerMemory {
  /** Resident memory of the process (VmRSS), bytes. */
  rss: number
  /** What the JavaScript heap and Buffers hold after the collection, bytes. */
  heapUsed: number
  external: number
}

/** Runs a full garbage collection in the server; returns its memory after it. */
export async function collectGarbage(pid: number): Promise<ServerMemory> {
  const result = await $fetch<{ collected: boolean, heapUsed: number, external: number }>('/api/test-support/gc', { method: 'POST' })
  if (!result.collected) throw new Error('[e2e] the server cannot collect garbage on demand: start it with NODE_OPTIONS=--expose-gc (GC_ENV)')
  return { rss: await rssOf(pid), heapUsed: result.heapUsed, external: result.external }
}

/** `rss 120.3 MiB (heap 40.1 MiB, buffers 3.2 MiB)` */
export const describeMemory = (memory: ServerMemory) => `RSS ${mib(memory.rss)} (heap ${mib(memory.heapUsed)}, buffers ${mib(memory.external)})`

export const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`
