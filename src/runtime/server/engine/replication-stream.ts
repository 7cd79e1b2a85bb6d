/**
 * One logical replication session: a TEMPORARY pgoutput slot created on the
 * replication connection itself (so Postgres drops it, and the WAL it pins,
 * whenever the session ends, even if this process is killed), streamed
 * through pg-logical-replication with acknowledgements under our control.
 * In cluster mode the slot is PERMANENT and named (permanent-slot.ts): the
 * next session, maybe another instance's, continues where this one was
 * acknowledged.
 */
import pg from 'pg'
import { LogicalReplicationService } from 'pg-logical-replication'
import { maxLsn, normalizeLsn, previousLsn, type Lsn } from '../../shared/lsn'
import { LiveSyncError } from './errors'
import { openPermanentSlot, waitUntilInactive } from './permanent-slot'
import { decodePgoutput, formatLsn, type PgoutputMessage } from './pgoutput-decoder'

interface PluginOptions {
  publication: string
  decodingWorkMem?: string | null
  onSlot: (consistentPoint: Lsn) => void
  permanent?: boolean
  beforeStart?: (point: Lsn, created: boolean) => Promise<void>
  /** Every CopyData message of the replication stream, undecoded. */
  onCopyData: (buffer: Buffer) => void
}

/** The part of pg's connection the stream reads CopyData messages from. */
interface CopyDataSource {
  removeAllListeners: (event: string) => void
  on: (event: 'copyData', listener: (message: { chunk: Buffer }) => void) => void
}

/** pgoutput with our decoder, and a temporary slot made right before streaming. */
class LiveSyncPgoutputPlugin {
  constructor(private readonly options: PluginOptions) {}

  get name(): string {
    return 'pgoutput'
  }

  parse(buffer: Buffer): PgoutputMessage {
    return decodePgoutput(buffer)
  }

  async start(client: pg.Client, slotName: string): Promise<unknown> {
    // Values are printed in the session's time zone: UTC gives timestamptz
    // text that converts to ISO strings without a Date (see row-shaper).
    await client.query(`SET TimeZone TO 'UTC'`)
    // Validated by the engine (a plain size); PostgreSQL 12 has no such setting.
    const workMem = this.options.decodingWorkMem
    if (workMem) await client.query(`SELECT set_config('logical_decoding_work_mem', '${workMem}', false) WHERE current_setting('server_version_num')::int >= 130000`)
    let consistentPoint: Lsn
    if (this.options.permanent) {
      const slot = await openPermanentSlot(client, slotName)
      consistentPoint = slot.point
      await this.options.beforeStart?.(consistentPoint, slot.created)
    }
    else {
      // A temporary slot must be created on the connection that streams from it.
      const { rows } = await client.query(`CREATE_REPLICATION_SLOT "${slotName}" TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT`)
      consistentPoint = normalizeLsn(rows[0].consistent_point)
    }
    this.options.onSlot(consistentPoint)
    // The library's own CopyData handler formats an LSN string, emits through
    // EventEmitter2 and starts an async acknowledgement for every message:
    // a few µs each, on the path of every row. Ours decodes in place.
    const connection = (client as unknown as { connection: CopyDataSource }).connection
    connection.removeAllListeners('copyData')
    connection.on('copyData', ({ chunk }) => this.options.onCopyData(chunk))
    return client.query(`START_REPLICATION SLOT "${slotName}" LOGICAL ${consistentPoint} (proto_version '1', publication_names '"${this.options.publication}"')`)
  }
}

export interface ReplicationStreamOptions {
  config: pg.ClientConfig
  publication: string
  slotName: string
  /** Every decoded message, in stream order. */
  onMessage: (message: PgoutputMessage) => void
  /** Silence after which the connection counts as dead, in ms. */
  idleTimeoutMs?: number
  /** `logical_decoding_work_mem` for this session (see StreamingOptions); `null`: the server's. */
  decodingWorkMem?: string | null
  /**
   * Whether every transaction received so far has been dispatched (some wait
   * for a read-back): only then may a keepalive's position be confirmed.
   */
  dispatched?: () => boolean
  /**
   * A permanent, named slot (created if missing), kept when the session
   * ends; `slotName` must be a plain identifier. Default: a temporary one.
   */
  permanent?: boolean
  /** Runs once the slot's start position is known, before anything is streamed (`created`: the slot was just made). */
  beforeStart?: (point: Lsn, created: boolean) => Promise<void>
  /**
   * Receives a keepalive's position between transactions instead of the
   * stream confirming it: the owner acknowledges it once it has recorded it
   * (cluster mode: once Redis has it).
   */
  onIdlePosition?: (lsn: Lsn) => void
  /**
   * How often dispatched positions are confirmed to Postgres, in ms (default
   * 1000). Each confirmation is a write on the replication connection, so
   * one per transaction cost about as much as the rest of a small
   * transaction's path; Postgres' own subscribers reply every 10 s. A
   * keepalive that asks for a reply is answered at once, and `stop()`
   * confirms what was dispatched.
   */
  ackIntervalMs?: number
}

/** XLogData ('w') and primary keepalive ('k') messages of the replication protocol. */
const XLOG_DATA = 0x77
const KEEPALIVE = 0x6B
/** XLogData: 'w', start LSN, end LSN, send time; the pgoutput message follows. */
const XLOG_HEADER = 25

export class ReplicationStream {
  private readonly service: LogicalReplicationService
  private inTransaction = false
  private acked: Lsn | null = null
  private pendingAck: Lsn | null = null
  private ackTimer: NodeJS.Timeout | null = null
  /** Messages received; the watchdog compares it between ticks (cheaper than a clock read per message). */
  private received = 0
  private lastActivity = Date.now()
  private watchdog: NodeJS.Timeout | null = null
  private stopping = false
  /** Why reading is paused (transactions waiting for a read-back, sockets draining, …); empty: reading. */
  private readonly pauses = new Set<string>()
  private get paused(): boolean {
    return this.pauses.size > 0
  }

  private resolveClosed!: (error: Error | null) => void
  /** Where the slot starts: nothing committed before it is streamed. */
  consistentPoint: Lsn | null = null
  /** Settles when the session ends: `null` after `stop()`, the error otherwise. */
  readonly closed: Promise<Error | null>

  constructor(private readonly options: ReplicationStreamOptions) {
    this.closed = new Promise(resolve => (this.resolveClosed = resolve))
    this.service = new LogicalReplicationService(
      { ...options.config, keepAlive: true },
      // We acknowledge a transaction only after it is dispatched; the library's
      // timer would acknowledge whatever arrived last.
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    )
    this.service.on('error', () => {}) // surfaced through the subscribe() promise
  }

  /** One CopyData message of the replication stream. */
  private onCopyData(buffer: Buffer): void {
    const kind = buffer[0]
    if (kind === XLOG_DATA) {
      this.received++
      const message = decodePgoutput(buffer, XLOG_HEADER)
      if (message.tag === 'begin') this.inTransaction = true
      else if (message.tag === 'commit') this.inTransaction = false
      this.options.onMessage(message)
    }
    else if (kind === KEEPALIVE) {
      this.received++
      // Between transactions everything up to the keepalive's position has
      // been dispatched: confirming it lets Postgres recycle WAL that only
      // unwatched tables wrote.
      if (!this.inTransaction) {
        const lsn = formatLsn(buffer.readUInt32BE(1), buffer.readUInt32BE(5))
        if (this.options.onIdlePosition) this.options.onIdlePosition(lsn)
        else if (this.options.dispatched?.() ?? true) this.pendingAck = maxLsn(this.pendingAck ?? this.acked, lsn)
      }
      if (buffer[17] === 1) this.flushAck()
    }
  }

  /** Creates the slot and starts streaming; resolves with the slot's consistent point. */
  start(): Promise<Lsn> {
    return new Promise<Lsn>((resolve, reject) => {
      let started = false
      const plugin = new LiveSyncPgoutputPlugin({
        publication: this.options.publication,
        decodingWorkMem: this.options.decodingWorkMem,
        permanent: this.options.permanent,
        beforeStart: this.options.beforeStart,
        onSlot: (point) => {
          this.consistentPoint = point
          this.acked = point
        },
        onCopyData: buffer => this.onCopyData(buffer),
      })
      this.service.once('start', () => {
        started = true
        this.startWatchdog()
        resolve(this.consistentPoint!)
      })
      this.service.subscribe(plugin as never, this.options.slotName).then(
        () => this.finish(started ? null : new LiveSyncError('REPLICATION', 'the replication stream ended before it started')),
        (error: Error) => {
          // A rejected subscribe() leaves the connection open.
          void this.service.stop().catch(() => {})
          const wrapped = error instanceof LiveSyncError ? error : new LiveSyncError('REPLICATION', `replication stream failed: ${error.message}`, { cause: error })
          if (!started) reject(wrapped)
          this.finish(wrapped)
        },
      )
    })
  }

  /** Confirms everything up to `lsn` (a dispatched transaction's end); coalesced over `ackIntervalMs`. */
  acknowledge(lsn: Lsn): void {
    this.pendingAck = lsn
    if (this.ackTimer || this.stopping) return
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null
      if (this.pendingAck) this.flushAck()
    }, this.options.ackIntervalMs ?? 1000)
    this.ackTimer.unref?.()
  }

  /**
   * Stops reading from the replication connection (Postgres holds the WAL
   * back meanwhile) for `reason`: transactions waiting for dispatch, or a
   * large transaction's parts waiting for sockets, stay bounded. Reading
   * resumes once every reason was resumed.
   */
  pause(reason = 'pending'): void {
    if (this.pauses.has(reason)) return
    const wasPaused = this.paused
    this.pauses.add(reason)
    if (!wasPaused) this.socket()?.pause?.()
  }

  resume(reason = 'pending'): void {
    if (!this.pauses.delete(reason) || this.paused) return
    this.socket()?.resume?.()
  }

  /** The replication connection's socket (pg-logical-replication keeps it internal). */
  private socket(): { pause?: () => void, resume?: () => void } | undefined {
    return (this.service as unknown as { _connection?: { stream?: { pause?: () => void, resume?: () => void } } })._connection?.stream
  }

  private flushAck(ping = false): void {
    const lsn = this.pendingAck ?? this.acked
    this.pendingAck = null
    if (!lsn || this.stopping) return
    this.acked = lsn
    // The library reports `lsn + 1`; Postgres must hear exactly the position
    // (a walsender shutting down waits until the reply equals what it sent).
    void this.service.acknowledge(previousLsn(lsn), ping).catch(() => {})
  }

  /**
   * Notices a dead connection: an idle stream is pinged, and one that stays
   * silent past the timeout is closed so the engine reconnects.
   */
  private startWatchdog(): void {
    const timeout = this.options.idleTimeoutMs ?? 30_000
    let seen = this.received
    this.watchdog = setInterval(() => {
      // A paused stream is silent on purpose.
      if (this.received !== seen || this.paused) {
        seen = this.received
        this.lastActivity = Date.now()
      }
      const silent = Date.now() - this.lastActivity
      if (silent > timeout) {
        void this.service.stop().catch(() => {})
        this.finish(new LiveSyncError('REPLICATION', `replication connection silent for ${Math.round(silent / 1000)} s`))
      }
      else if (silent > timeout / 3) this.flushAck(true)
    }, Math.max(50, Math.floor(timeout / 6)))
    this.watchdog.unref?.()
  }

  private finish(error: Error | null): void {
    if (this.watchdog) clearInterval(this.watchdog)
    this.watchdog = null
    if (this.ackTimer) clearTimeout(this.ackTimer)
    this.ackTimer = null
    this.resolveClosed(this.stopping ? null : error)
  }

  /**
   * Ends the session and waits until Postgres has dropped the temporary
   * slot, dropping it ourselves if it lingers inactive. A permanent slot is
   * kept: this waits until it is free for the next session.
   */
  async stop(): Promise<void> {
    if (this.stopping) return
    this.stopping = true
    if (this.pendingAck) {
      this.stopping = false
      this.flushAck()
      this.stopping = true
    }
    await this.service.stop().catch(() => {})
    this.service.removeAllListeners()
    this.finish(null)
    if (this.options.permanent) await waitUntilInactive(this.options.config, this.options.slotName)
    else await dropSlot(this.options.config, this.options.slotName)
  }
}

/** Waits for a temporary slot to disappear; drops it if it stays, inactive. */
async function dropSlot(config: pg.ClientConfig, slotName: string, deadlineMs = 5000): Promise<void> {
  const client = new pg.Client(config)
  client.on('error', () => {})
  try {
    await client.connect()
    const deadline = Date.now() + deadlineMs
    for (;;) {
      const { rows } = await client.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slotName])
      if (rows.length === 0) return
      if (Date.now() > deadline) {
        if (!rows[0]!.active) await client.query('SELECT pg_drop_replication_slot($1)', [slotName]).catch(() => {})
        return
      }
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }
  catch {
    // The database is unreachable: the slot was temporary and dies with its session anyway.
  }
  finally {
    await client.end().catch(() => {})
  }
}
