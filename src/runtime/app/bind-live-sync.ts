/**
 * Binds a key subscription to the page's refs: each committed transaction
 * patches the watched refs in place (list rows keep their identity), then
 * `sync` may post-process them. Imports only Vue, so it is tested without Nuxt.
 */
import { getCurrentScope, isReactive, onScopeDispose, ref, shallowRef, toRaw, toValue, triggerRef, watch, type MaybeRefOrGetter, type Ref } from 'vue'
import type { Lsn } from '../shared/lsn'
import { changesForRow, forgetListIndex, patchList, patchObject } from '../shared/patch'
import type { Change, KeyValue, ResyncMessage, Row, TxMessage } from '../shared/protocol'
import type { LiveSyncClient, LiveSyncStatus } from './live-sync-client'

export interface LiveSyncWatchTarget<T = unknown> {
  /** A ref holding a list of rows, or a single row (or null). */
  ref: Ref<T>
  /** The Sequelize model name whose rows it holds. */
  model: string
}

/** What a watched ref holds once it holds data (`useFetch` data starts as `undefined`). */
export type LiveSyncWatchedValue<E> = E extends { ref: Ref<infer T> } ? Exclude<T, undefined> : never

/** The row type of a watched ref: the element of a list, or the single row. */
export type LiveSyncRowOf<E> = LiveSyncWatchedValue<E> extends ReadonlyArray<infer R> ? R : Exclude<LiveSyncWatchedValue<E>, null>

/**
 * The arguments of `sync`, one tuple per watched name, so that testing
 * `name` narrows `updated` and `ops` to that ref's types.
 */
export type LiveSyncSyncArgs<W> = {
  [N in keyof W & string]: [name: N, updated: LiveSyncWatchedValue<W[N]>, ops: Change<LiveSyncRowOf<W[N]>>[]]
}[keyof W & string]

export interface UseLiveSyncOptions<W extends Record<string, LiveSyncWatchTarget> = Record<string, LiveSyncWatchTarget>> {
  watch: W
  /**
   * Called once per committed transaction for each watched name whose rows
   * changed, after the ref was patched. Return (or resolve to) a value to
   * make it the ref's value; `undefined` keeps `updated`. Declare all three
   * parameters, `(name, updated, ops) => …`: testing `name` then narrows
   * `updated` and `ops` to that ref's types (TypeScript only narrows a
   * callback that takes the whole tuple).
   */
  sync?: (...args: LiveSyncSyncArgs<W>) => unknown
  /**
   * Reloads the page's data when the server says what it holds may be stale
   * (a TRUNCATE, a replication gap, a cursor older than the server's
   * history). Pass `refresh` from `useFetch`/`useAsyncData`.
   */
  refresh?: () => unknown
}

export interface UseLiveSyncReturn {
  status: Ref<LiveSyncStatus>
  error: Ref<Error | null>
  /** Unsubscribes for good (also done when the component's scope is disposed). */
  stop: () => void
}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  !!value && typeof (value as PromiseLike<unknown>).then === 'function'

/**
 * @param client the tab's connection (created on first use)
 * @param key the subscription key (a value, ref or getter)
 * @param options what to keep live and how
 * @param since the cursor the page's data is at least as new as, read when a key is subscribed
 */
export function bindLiveSync<W extends Record<string, LiveSyncWatchTarget>>(
  client: () => LiveSyncClient,
  key: MaybeRefOrGetter<KeyValue | null | undefined>,
  options: UseLiveSyncOptions<W>,
  since: () => Lsn | null = () => null,
): UseLiveSyncReturn {
  const status = ref<LiveSyncStatus>('idle')
  const error = shallowRef<Error | null>(null)
  const targets = Object.entries(options.watch)
  let unsubscribe: (() => void) | null = null
  let generation = 0
  // Batches are applied strictly in order, also across an async `sync`/`refresh`.
  let queue: Promise<void> | null = null

  const fail = (cause: unknown) => {
    error.value = cause instanceof Error ? cause : new Error(String(cause))
    console.error('[live-sync]', cause)
  }
  const serial = (task: () => void | Promise<void>) => {
    const settle = (promise: Promise<void>) => {
      queue = promise
      void promise.then(() => {
        if (queue === promise) queue = null
      })
    }
    if (queue) return settle(queue.then(task).catch(fail))
    try {
      const result = task()
      if (isThenable(result)) settle(Promise.resolve(result).catch(fail))
    }
    catch (cause) {
      fail(cause)
    }
  }

  /** Makes `value` (what `sync` gave) the ref's value, unless the binding moved on meanwhile. */
  const assign = (target: Ref<unknown>, value: unknown, current: number) => {
    // An async `sync` of a key we left must not overwrite the new key's data.
    if (value === undefined || current !== generation) return
    if (toRaw(value) !== toRaw(target.value)) target.value = value
    // The same array, reordered or edited in place: only a reactive value notices that.
    else if (!isReactive(target.value)) triggerRef(target)
  }

  const apply = (message: TxMessage, current: number): void | Promise<void> => {
    const byModel = new Map<string, Change[]>()
    for (const change of message.changes) {
      const list = byModel.get(change.model)
      if (list) list.push(change)
      else byModel.set(change.model, [change])
    }
    const synced: Array<[string, Ref<unknown>, Change[]]> = []
    for (const [name, target] of targets) {
      const changes = byModel.get(target.model)
      if (!changes) continue
      const ops = patchTarget(target, changes, client().models[target.model]?.id ?? ['id'])
      if (ops) synced.push([name, target.ref, ops])
    }
    if (!options.sync) return
    const pending: Promise<void>[] = []
    for (const [name, target, ops] of synced) {
      const result = (options.sync as (name: string, updated: unknown, ops: Change[]) => unknown)(name, target.value, ops)
      // Resolving to undefined after editing `updated` in place still needs a shallow ref triggered.
      if (isThenable(result)) pending.push(Promise.resolve(result).then(value => assign(target, value === undefined ? target.value : value, current)))
      else assign(target, result, current)
    }
    if (pending.length) return Promise.all(pending).then(() => {})
  }

  // The refreshed data may be the same array refilled in place: index it anew.
  const forgetIndexes = () => {
    for (const [, target] of targets) {
      const value = target.ref.value
      if (Array.isArray(value)) forgetListIndex(toRaw(value))
    }
  }

  const resync = (message: ResyncMessage): void | Promise<void> => {
    if (options.refresh) return Promise.resolve(options.refresh()).then(forgetIndexes)
    console.warn(`[live-sync] the data of key ${JSON.stringify(message.key)} may be stale (${message.reason}); pass \`refresh\` to useLiveSync to reload it automatically.`)
  }

  const subscribe = (value: KeyValue | null | undefined) => {
    unsubscribe?.()
    unsubscribe = null
    const current = ++generation
    if (value === null || value === undefined || value === '') {
      status.value = 'idle'
      error.value = null
      return
    }
    status.value = 'connecting'
    unsubscribe = client().subscribe(value, {
      // A batch for a key we left is dropped (the queue may still hold it).
      batch: message => serial(() => (current === generation ? apply(message, current) : undefined)),
      resync: message => serial(() => (current === generation ? resync(message) : undefined)),
      status: (next, cause) => {
        if (current !== generation) return
        status.value = next
        error.value = cause
      },
    }, since())
  }

  const stopWatching = watch(() => toValue(key), subscribe, { immediate: true })

  const stop = () => {
    stopWatching()
    generation++
    unsubscribe?.()
    unsubscribe = null
    status.value = 'idle'
  }
  if (getCurrentScope()) onScopeDispose(stop)
  return { status, error, stop }
}

/**
 * Patches one watched ref; returns the changes that concerned it, or null
 * when it was not touched. A deep ref's value is a reactive proxy, patched
 * through it (fine-grained updates); a value that is not reactive — a
 * shallowRef's, or Nuxt 4's `useFetch` data (a writable computed over a
 * shallowRef, which `isShallow` does not recognize) — is patched as is and
 * its ref triggered once.
 */
function patchTarget(target: LiveSyncWatchTarget, changes: Change[], idAttributes: string[]): Change[] | null {
  const holder = target.ref
  const value = holder.value
  if (Array.isArray(value)) {
    if (!patchList(value as Row[], changes, idAttributes, toRaw(value))) return null
    if (!isReactive(value)) triggerRef(holder)
    return changes
  }
  if (value && typeof value === 'object') {
    const relevant = changesForRow(changes, value as Row, idAttributes)
    if (relevant.length === 0) return null
    const result = patchObject(value as Row, relevant, idAttributes)
    if (!result.changed) return null
    if (result.value !== value) holder.value = result.value
    else if (!isReactive(value)) triggerRef(holder)
    return relevant
  }
  return null
}
