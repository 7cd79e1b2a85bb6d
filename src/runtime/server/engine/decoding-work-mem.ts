/**
 * `logical_decoding_work_mem` of the replication session (the module's
 * `decodingWorkMem`): its default and its check, shared by the module (at
 * build time) and the engine (for values from runtime config). Framework-free.
 */

/** What live sync sets unless told otherwise (see StreamingOptions.decodingWorkMem). */
export const DEFAULT_DECODING_WORK_MEM = '4MB'

const MEMORY_SIZE_RE = /^\d{1,9}(?:kB|MB|GB)$/

/** A size as Postgres reads it (`512kB`, `4MB`, `1GB`); also what keeps the value safe to inline into SQL. */
export function isMemorySize(value: unknown): value is string {
  return typeof value === 'string' && MEMORY_SIZE_RE.test(value)
}
