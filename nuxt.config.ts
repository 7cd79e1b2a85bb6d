// The playground app (`npm run dev`), living in playground/ and loading the
// module from its source. `nuxi prepare` / `nuxt-module-build prepare` read
// this file too (they generate the root .nuxt/ that tsconfig.json extends),
// so nothing here may need a database or an environment variable.
import { createResolver } from '@nuxt/kit'
import { defineNuxtConfig } from 'nuxt/config'

const { resolve } = createResolver(import.meta.url)

export default defineNuxtConfig({
  // The module's source, loaded through jiti. An absolute path: it is the very
  // entry `nuxt-module-build prepare` adds, so the module is installed once.
  modules: [resolve('./src/module')],
  srcDir: 'playground/app',
  serverDir: 'playground/server',
  dir: {
    public: 'playground/public',
    shared: 'playground/shared',
    modules: 'playground/modules',
  },
  // The dev server builds into playground/.nuxt, so `npm test` (which
  // regenerates the root .nuxt/) can run while the playground is up.
  $development: {
    buildDir: 'playground/.nuxt',
  },
  liveSync: {
    // Exports `sequelize` (null without DATABASE_URL: pages render, live sync stays off).
    sequelize: '~~/playground/server/utils/db',
  },
  app: {
    head: {
      title: 'nuxt-live-sync playground',
      htmlAttrs: { lang: 'en' },
      meta: [{ name: 'viewport', content: 'width=device-width, initial-scale=1' }],
    },
  },
  vite: {
    // `nuxi dev --host 127.0.0.1` alone still opens the HMR socket on all
    // interfaces (the server build's too: see playground/modules/dev-server.ts).
    server: { hmr: { host: '127.0.0.1' } },
  },
  devtools: { enabled: false },
  telemetry: false,
  compatibilityDate: '2025-07-15',
})
