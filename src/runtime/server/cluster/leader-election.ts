/**
 * Which instance streams the slot: the one holding a Postgres advisory lock
 * on a dedicated connection. The lock dies with that connection, so with
 * the leader (kill -9 included: the kernel closes its socket and Postgres
 * ends the session at once). The others wait for the lock in Postgres
 * itself, a second at a time (`lock_timeout`), so one gets it the moment
 * it is free, and a follower that went away without a word stops queueing
 * within a second.
 */
import pg from 'pg'

/** First half of the advisory lock key ('LSYN'); the second is hashtext(slot name). */
const LOCK_CLASS = 0x4C53594E

/** A pause that does not keep the process alive. */
function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms).unref?.())
}

export interface LeaderElectionOptions {
  config: pg.ClientConfig
  slotName: string
  /** This instance now holds the lock. */
  lead: () => void
  /** It no longer does (its connection ended): stop streaming at once. */
  lost: () => void
  report: (error: unknown) => void
  /** How often the leader checks its lock connection, ms (default 2000). */
  checkIntervalMs?: number
  /** Pause after a failed attempt to connect, ms (default 1000). */
  retryDelayMs?: number
}

export class LeaderElection {
  leading = false
  private client: pg.Client | null = null
  private stopped = false
  private running: Promise<void> | null = null

  constructor(private readonly options: LeaderElectionOptions) {}

  start(): void {
    this.running ??= this.run()
  }

  /** Leaves the election; a leader gives up the lock (call it once the slot was let go). */
  async stop(): Promise<void> {
    this.stopped = true
    await this.client?.end().catch(() => {})
    await this.running
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const client = new pg.Client({ ...this.options.config, keepAlive: true, keepAliveInitialDelayMillis: 5000 })
      this.client = client
      client.on('error', () => {}) // seen as a failing query or as 'end'
      const ended = new Promise<void>(resolve => client.once('end', () => resolve()))
      try {
        await client.connect()
        // A server-wide idle_session_timeout must not end the leader's quiet connection.
        await client.query('SET idle_session_timeout = 0').catch(() => {})
        await client.query(`SET lock_timeout = '1s'`)
        if (!(await this.acquire(client))) continue
        this.leading = true
        this.options.lead()
        await Promise.race([ended, this.watch(client)])
      }
      catch (error) {
        if (!this.stopped) this.options.report(error)
      }
      finally {
        if (this.leading) {
          this.leading = false
          if (!this.stopped) this.options.lost()
        }
        await client.end().catch(() => {})
      }
      if (!this.stopped) await sleep(this.options.retryDelayMs ?? 1000)
    }
  }

  /** Waits in Postgres until the lock is ours (or the election stops). */
  private async acquire(client: pg.Client): Promise<boolean> {
    while (!this.stopped) {
      try {
        await client.query('SELECT pg_advisory_lock($1::int, hashtext($2))', [LOCK_CLASS, this.options.slotName])
        return !this.stopped
      }
      catch (error) {
        if ((error as { code?: string }).code !== '55P03') throw error // lock_not_available: another second
      }
    }
    return false
  }

  /** Resolves when the lock connection is found dead, or the election stops. */
  private async watch(client: pg.Client): Promise<void> {
    while (!this.stopped) {
      await sleep(this.options.checkIntervalMs ?? 2000)
      if (this.stopped) return
      await client.query('SELECT 1')
    }
  }
}
