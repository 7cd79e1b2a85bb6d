/**
 * A writer outside the app for the end-to-end tests: commits one change to
 * the fixture's tasks every `periodMs` on its own connection, going round
 * the organizations; for each, an insert, an update of a random row, a
 * delete of a random row, in turn.
 */
import pg from 'pg'
import { waitFor } from './wait'

export interface WriterOptions {
  url: string
  organizations: number[]
  /** Part of each title it writes. */
  label: string
  /** Time from one commit's start to the next's (default 20 ms). */
  periodMs?: number
}

export class Writer {
  commits = 0
  private running = true
  private readonly done: Promise<void>

  constructor(private readonly options: WriterOptions) {
    this.done = this.run()
    this.done.catch(() => {}) // surfaces through stop() and commitsMore()'s deadline
  }

  async commitsMore(count: number, timeout = 15_000): Promise<void> {
    const target = this.commits + count
    await waitFor(() => this.commits >= target, { timeout, message: `the writer did not commit ${count} more changes` })
  }

  async stop(): Promise<void> {
    this.running = false
    await this.done
  }

  private async run(): Promise<void> {
    const { url, organizations, label, periodMs = 20 } = this.options
    const client = new pg.Client(url)
    await client.connect()
    try {
      for (let n = 0; this.running; n++) {
        const started = Date.now()
        const org = organizations[n % organizations.length]!
        const kind = Math.floor(n / organizations.length) % 3
        if (kind === 0) await client.query('INSERT INTO tasks (organization_id, title) VALUES ($1, $2)', [org, `${label} insert ${n}`])
        else if (kind === 1) await client.query(`UPDATE tasks SET title = $2, done = NOT done, updated_at = now() WHERE id = (SELECT id FROM tasks WHERE organization_id = $1 ORDER BY random() LIMIT 1)`, [org, `${label} update ${n}`])
        else await client.query(`DELETE FROM tasks WHERE id = (SELECT id FROM tasks WHERE organization_id = $1 ORDER BY random() LIMIT 1)`, [org])
        this.commits++
        const wait = periodMs - (Date.now() - started)
        if (wait > 0 && this.running) await new Promise(resolve => setTimeout(resolve, wait))
      }
    }
    finally {
      await client.end()
    }
  }
}
