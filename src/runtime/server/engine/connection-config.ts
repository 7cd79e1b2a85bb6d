import type { ClientConfig } from 'pg'
import type { Sequelize } from 'sequelize'

/**
 * The pg connection settings live sync uses: the given URL or config, or
 * else those of the app's Sequelize instance.
 */
export function resolveConnectionConfig(sequelize: Sequelize, connection?: string | ClientConfig | null): ClientConfig {
  if (typeof connection === 'string' && connection) return { connectionString: connection }
  if (connection && typeof connection === 'object') return { ...connection }
  const config = sequelize.config as {
    host?: string
    port?: number | string
    username?: string
    password?: string | null
    database?: string
    dialectOptions?: { ssl?: ClientConfig['ssl'] }
  }
  return {
    host: config.host,
    port: config.port ? Number(config.port) : undefined,
    user: config.username,
    password: config.password ?? undefined,
    database: config.database,
    ssl: config.dialectOptions?.ssl,
  }
}

/** `user@host:port/database`, for messages (never the password). */
export function describeConnection(config: ClientConfig): string {
  if (config.connectionString) {
    try {
      const url = new URL(config.connectionString)
      return `${decodeURIComponent(url.username)}@${url.hostname}:${url.port || 5432}${url.pathname}`
    }
    catch {
      return 'the configured database'
    }
  }
  return `${config.user ?? ''}@${config.host ?? 'localhost'}:${config.port ?? 5432}/${config.database ?? ''}`
}
