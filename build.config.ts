import { defineBuildConfig } from 'unbuild'

// `nuxt-live-sync/migration` is required from plain CommonJS migration files
// (sequelize-cli) as well as imported from ESM ones (umzug), so it ships both.
export default defineBuildConfig({
  entries: ['src/migration'],
  rollup: { emitCJS: true },
  externals: ['sequelize'],
})
