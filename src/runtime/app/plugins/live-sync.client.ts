/**
 * Creates the tab's live sync connection (it opens its socket on the first
 * subscription) and remembers where the server was when a navigation began:
 * data a new page loads is at least that new, so its subscription replays
 * from there.
 */
import { defineNuxtPlugin, useRouter, useRuntimeConfig, useState } from '#imports'
import { LiveSyncClient } from '../live-sync-client'
import { LiveSyncInspector } from '../live-sync-inspector'

export default defineNuxtPlugin({
  name: 'live-sync',
  setup(nuxtApp) {
    const config = useRuntimeConfig()
    const path = (config.public.liveSync as { path?: string } | undefined)?.path ?? '/_live_sync'
    const base = config.app.baseURL.replace(/\/$/, '')
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${base}${path}`
    const client = new LiveSyncClient({
      url,
      initialCursor: useState<string | null>('live-sync:cursor').value ?? null,
      // The DevTools tab's feed of transactions and refusals; nothing of it in a production build.
      inspector: import.meta.dev ? new LiveSyncInspector() : undefined,
    })
    // Before the new page's setup (and its data fetches) runs.
    useRouter().beforeEach(() => {
      client.navigationCursor = client.knownCursor
    })
    nuxtApp.hook('page:finish', () => {
      client.navigationCursor = null
    })
    return { provide: { liveSync: client } }
  },
})
