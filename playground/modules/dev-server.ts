import { addVitePlugin, defineNuxtModule } from '@nuxt/kit'

/**
 * A dev-server fix for the playground, not about live sync: Nuxt builds the
 * server bundle with `hmr: false` and only then gives it an HMR port (24678),
 * without the `vite.server.hmr.host` of nuxt.config, so that socket would
 * listen on all interfaces. Set its host after Nuxt did.
 */
export default defineNuxtModule({
  meta: { name: 'playground-dev-server' },
  setup(_options, nuxt) {
    if (!nuxt.options.dev) return

    addVitePlugin({
      name: 'playground:hmr-host',
      enforce: 'post',
      config(config) {
        const hmr = config.server?.hmr
        if (hmr && typeof hmr === 'object') hmr.host ??= '127.0.0.1'
      },
    })
  },
})
