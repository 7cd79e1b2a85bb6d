'use strict'
/**
 * Creates the `live_sync` publication FOR ALL TABLES and sets REPLICA IDENTITY
 * FULL on the published tables (see `nuxt-live-sync/migration`). Copy it into
 * your migrations folder; to publish only some tables, pass them:
 * `liveSync.up(queryInterface, ['tasks', 'projects'])`.
 *
 * Works with sequelize-cli, which calls `up(queryInterface, Sequelize)`, and
 * with umzug, which calls `up({ name, path, context })` with the
 * QueryInterface (or the Sequelize instance) as context.
 */
const liveSync = require('nuxt-live-sync/migration')

/** The QueryInterface, whichever runner is calling. */
function queryInterfaceOf(arg) {
  const candidate = arg && arg.context !== undefined ? arg.context : arg
  return candidate && typeof candidate.getQueryInterface === 'function' ? candidate.getQueryInterface() : candidate
}

module.exports = {
  up: arg => liveSync.up(queryInterfaceOf(arg)),
  down: arg => liveSync.down(queryInterfaceOf(arg)),
}
