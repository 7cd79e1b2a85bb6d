// The playground app (`npm run dev`), living in playground/ and loading the
// module from its source. `nuxi prepare` / `nuxt-module-build prepare` read
// this file too (they generate the root .nuxt/ that tsconfig.json references),
// so nothing here may need a database or an environment variable.
import { createResolver } from '@nuxt/kit'
import { defineNuxtConfig } from 'nuxt/config'

const { resolve } = createResolver(import.meta.url)

export default defineNuxtConfig({
  // The module's source, loaded through jiti. An absolute path: it is the very
  // entry `nuxt-module-build prepare` adds, so the module is installed once.
  modules: [resolve('./src/module')],
  $development: {
    // Nuxt DevTools (Shift+Alt+D, or the button at the bottom), with live sync's own "Live Sync" tab.
    devtools: { enabled: true },
    // The dev server builds into playground/.nuxt, so `npm test` (which
    // regenerates the root .nuxt/) can run while the playground is up.
    buildDir: 'playground/.nuxt',
  },
  devtools: { enabled: false },
  app: {
    head: {
      title: 'nuxt-live-sync playground',
      htmlAttrs: { lang: 'en' },
      meta: [{ name: 'viewport', content: 'width=device-width, initial-scale=1' }],
    },
  },
  dir: {
    public: 'playground/public',
    shared: 'playground/shared',
    modules: 'playground/modules',
  },
  srcDir: 'playground/app',
  serverDir: 'playground/server',
  compatibilityDate: '2025-07-15',
  nitro: {
    typescript: {
      tsConfig: { include: ['../src/runtime/server/**/*', '../src/runtime/shared/**/*'] },
    },
  },
  vite: {
    // `nuxi dev --host 127.0.0.1` alone still opens the HMR socket on all
    // interfaces (the server build's too: see playground/modules/dev-server.ts).
    server: { hmr: { host: '127.0.0.1' } },
  },
  // `npm run typecheck` checks the module's own source in the context it runs
  // in: its browser side with the app, its server side with Nitro, module.ts
  // with the build tools (paths are relative to .nuxt/).
  typescript: {
    tsConfig: { include: ['../src/runtime/app/**/*', '../src/runtime/shared/**/*'] },
    nodeTsConfig: { include: ['../src/*.ts', '../eslint.config.mjs', '../vitest.config.ts', '../build.config.ts'] },
  },
  telemetry: false,
  liveSync: {
    // Exports `sequelize` (null without DATABASE_URL: pages render, live sync stays off).
    sequelize: '~~/playground/server/utils/db',
  },
})
