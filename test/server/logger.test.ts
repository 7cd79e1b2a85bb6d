/**
 * The server's log goes through consola (what Nitro logs with), tagged
 * `live-sync`, levels kept; debug lines only when asked for (debugKeys).
 */
import { consola, LogLevels, type ConsolaReporter, type LogObject } from 'consola'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createLiveSyncLogger } from '../../src/runtime/server/engine/logger'

describe('live sync logger', () => {
  const logged: LogObject[] = []
  const reporter: ConsolaReporter = { log: entry => logged.push(entry) }
  let reporters: ConsolaReporter[]
  let level: number

  beforeEach(() => {
    logged.length = 0
    reporters = consola.options.reporters
    level = consola.level
    consola.setReporters([reporter])
    consola.level = LogLevels.info
  })
  afterEach(() => {
    consola.setReporters(reporters)
    consola.level = level
  })

  it('writes each level with the live-sync tag instead of the [live-sync] prefix', () => {
    const logger = createLiveSyncLogger()
    logger.info('[live-sync] streaming 2 watched table(s)')
    logger.warn('[live-sync] no handler')
    logger.error('replication stream failed')
    logger.debug!('[live-sync] key "1": not shown at the info level')
    expect(logged.map(entry => [entry.type, entry.tag, entry.args.join(' ')])).toEqual([
      ['info', 'live-sync', 'streaming 2 watched table(s)'],
      ['warn', 'live-sync', 'no handler'],
      ['error', 'live-sync', 'replication stream failed'],
    ])
  })

  it('shows debug lines when debugKeys asked for them', () => {
    createLiveSyncLogger({ debug: true }).debug!('[live-sync] key "1": transaction 0/10')
    expect(logged.map(entry => [entry.type, entry.tag, entry.args.join(' ')])).toEqual([['debug', 'live-sync', 'key "1": transaction 0/10']])
  })
})
