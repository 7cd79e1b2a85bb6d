'use strict'
/**
 * Creates the `live_sync` publication (see `nuxt-live-sync/migration`). Copy it
 * into your migrations folder; it may run before or after the migrations that
 * create your tables:
 * - run by a superuser, the publication is FOR ALL TABLES;
 * - run by any other role (it needs the CREATE privilege on the database, which
 *   its owner has), it is a publication that role owns, and the server adds
 *   each watched table to it at start-up.
 * Either way the server makes each watched table it owns REPLICA IDENTITY FULL
 * at start-up (`liveSync.manageTables`). To publish only some tables, pass
 * them: `liveSync.up(queryInterface, ['tasks', 'projects'])`.
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
