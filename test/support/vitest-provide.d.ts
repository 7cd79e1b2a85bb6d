// Values the global setup (global-setup.ts) hands to tests via inject().
declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the shared test cluster (wal_level=logical). */
    pgAdminUrl: string
    /** Which source served it: 'env' | 'testcontainers' | 'system' | 'embedded'. */
    pgSource: string
  }
}

export {}
