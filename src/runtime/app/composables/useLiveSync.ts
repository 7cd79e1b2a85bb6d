import { ref, shallowRef, toValue, type MaybeRefOrGetter } from 'vue'
import { useNuxtApp, useRequestEvent, useState } from '#imports'
import type { KeyValue } from '../../shared/protocol'
import { bindLiveSync, type LiveSyncWatchTarget, type UseLiveSyncOptions, type UseLiveSyncReturn } from '../bind-live-sync'
import type { LiveSyncClient } from '../live-sync-client'

export type { LiveSyncWatchTarget, UseLiveSyncOptions, UseLiveSyncReturn }

/**
 * Keeps the watched refs live with the database rows of one subscription key.
 *
 * ```ts
 * const { data: tasks, refresh } = await useFetch(`/api/organizations/${id}/tasks`)
 * const { status } = useLiveSync(() => route.params.id, {
 *   watch: { tasks: { ref: tasks, model: 'Task' } },
 *   sync: (name, updated) => name === 'tasks' ? updated.sort(byTitle) : undefined,
 *   refresh,
 * })
 * ```
 *
 * @param key the subscription key value (a value, ref or getter); null/undefined unsubscribes
 */
export function useLiveSync<W extends Record<string, LiveSyncWatchTarget>>(
  key: MaybeRefOrGetter<KeyValue | null | undefined>,
  options: UseLiveSyncOptions<W>,
): UseLiveSyncReturn {
  // The server-rendered page's data is at least as new as the request's cursor;
  // it travels in the payload so the browser can subscribe from there.
  const ssrCursor = useState<string | null>('live-sync:cursor', () => import.meta.server ? (useRequestEvent()?.context.liveSyncCursor ?? null) : null)
  if (import.meta.server) {
    // What the browser shows while hydrating, so the two renders match.
    const value = toValue(key)
    return { status: ref(value === null || value === undefined || value === '' ? 'idle' : 'connecting'), error: shallowRef(null), stop: () => {} }
  }

  const nuxtApp = useNuxtApp()
  const client = () => nuxtApp.$liveSync as LiveSyncClient
  const since = () => {
    const live = client()
    return nuxtApp.isHydrating ? (ssrCursor.value ?? live.knownCursor) : (live.navigationCursor ?? live.knownCursor)
  }
  return bindLiveSync(client, key, options, since)
}
