import { getCurrentInstance, onServerPrefetch, ref, shallowRef, toValue, type MaybeRefOrGetter, type Ref } from 'vue'
import { clearNuxtState, useNuxtApp, useRequestEvent, useState } from '#imports'
import { keyString, type KeyValue, type Row } from '../../shared/protocol'
import type { ServerSnapshot } from '../../shared/server-snapshot'
import {
  bindLiveSync,
  ownedSnapshotModels,
  ownedSnapshotRows,
  type LiveSyncInclude,
  type LiveSyncRefs,
  type LiveSyncWatchModel,
  type LiveSyncWatchRef,
  type LiveSyncWatchTarget,
  type PreloadedSnapshot,
  type UseLiveSyncOptions,
  type UseLiveSyncResult,
  type UseLiveSyncReturn,
} from '../bind-live-sync'
import type { LiveSyncClient } from '../live-sync-client'

export type { LiveSyncInclude, LiveSyncRefs, LiveSyncWatchModel, LiveSyncWatchRef, LiveSyncWatchTarget, UseLiveSyncOptions, UseLiveSyncResult, UseLiveSyncReturn }

/** The payload entry of a server-rendered snapshot for this key and these models. */
function snapshotStateKey(key: KeyValue, watch: Record<string, LiveSyncWatchTarget>): string {
  return `live-sync:snapshot:${keyString(key)}:${JSON.stringify(ownedSnapshotModels(watch))}`
}

/**
 * Keeps the watched refs live with the database rows of one subscription key.
 *
 * ```ts
 * // Your own data load …
 * const { data: tasks, refresh } = await useFetch(`/api/organizations/${id}/tasks`)
 * const { status } = useLiveSync(() => route.params.id, {
 *   watch: { tasks: { ref: tasks, model: 'Task' } },
 *   sync: (name, updated) => name === 'tasks' ? updated.sort(byTitle) : undefined,
 *   refresh,
 * })
 * // … or live sync's: the key's rows, read on the server during SSR, no API route to write.
 * const { refs: { tasks } } = await useLiveSync(() => route.params.id, { watch: { tasks: { model: 'Task' } } })
 * ```
 *
 * @param key the subscription key value (a value, ref or getter); null/undefined unsubscribes
 */
export function useLiveSync<const W extends Record<string, LiveSyncWatchTarget>>(
  key: MaybeRefOrGetter<KeyValue | null | undefined>,
  options: UseLiveSyncOptions<W>,
): UseLiveSyncResult<W> {
  // The server-rendered page's data is at least as new as the request's cursor;
  // it travels in the payload so the browser can subscribe from there.
  const ssrCursor = useState<string | null>('live-sync:cursor', () => import.meta.server ? (useRequestEvent()?.context.liveSyncCursor ?? null) : null)
  const owned = Object.values(options.watch).some(entry => !entry.ref)
  if (import.meta.server) return serverSide(key, options, owned)

  const nuxtApp = useNuxtApp()
  const client = () => nuxtApp.$liveSync as LiveSyncClient
  const since = () => {
    const live = client()
    return nuxtApp.isHydrating ? (ssrCursor.value ?? live.knownCursor) : (live.navigationCursor ?? live.knownCursor)
  }
  let preloaded: PreloadedSnapshot | null = null
  const value = toValue(key)
  if (owned && nuxtApp.isHydrating && value !== null && value !== undefined && value !== '') {
    // The server render's rows, taken once: a later visit loads afresh.
    const stateKey = snapshotStateKey(value, options.watch)
    const state = useState<ServerSnapshot | null>(stateKey, () => null)
    if (state.value) preloaded = { key: keyString(value)!, snapshot: state.value }
    clearNuxtState(stateKey)
  }
  return bindLiveSync(client, key, options, since, preloaded)
}

/**
 * During a server render: refs created for entries without a `ref` are
 * filled from a snapshot read right here (authorized by the
 * `live-sync:authorize` hook with the page's request), which goes into the
 * payload with its cursor. Nothing is subscribed on the server.
 */
function serverSide<W extends Record<string, LiveSyncWatchTarget>>(key: MaybeRefOrGetter<KeyValue | null | undefined>, options: UseLiveSyncOptions<W>, owned: boolean): UseLiveSyncResult<W> {
  const value = toValue(key)
  const subscribed = value !== null && value !== undefined && value !== ''
  const names = Object.entries(options.watch).filter(([, entry]) => !entry.ref).map(([name]) => name)
  const refs = Object.fromEntries(names.map(name => [name, shallowRef<Row[]>([])])) as Record<string, Ref<Row[]>>
  const error = shallowRef<Error | null>(null)
  // What the browser shows while hydrating, so the two renders match.
  const result: UseLiveSyncReturn<W> = { status: ref(subscribed ? 'connecting' : 'idle'), error, refs: refs as LiveSyncRefs<W>, stop: () => {} }
  let ready: Promise<unknown> = Promise.resolve()
  if (owned && subscribed) {
    const state = useState<ServerSnapshot | null>(snapshotStateKey(value, options.watch), () => null)
    const take = useRequestEvent()?.context.liveSyncSnapshot
    const models = ownedSnapshotModels(options.watch)
    ready = (take ? take(value, models) : Promise.reject(new Error('[live-sync] live sync is not running on this server')))
      .then((snapshot) => {
        state.value = snapshot
        for (const [name, rows] of Object.entries(ownedSnapshotRows(options.watch, snapshot.rows))) refs[name]!.value = rows
      }, (cause: unknown) => {
        // The browser tries again over its socket (and reports the outcome there).
        error.value = cause instanceof Error ? cause : new Error(String(cause))
      })
    // Rendered with its rows even when the page does not await the result.
    if (getCurrentInstance()) onServerPrefetch(() => ready)
  }
  return Object.assign(ready.then(() => result), result)
}
