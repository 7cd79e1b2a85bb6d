/**
 * Binds a key subscription to the page's refs: each committed transaction
 * patches the watched refs in place (list rows keep their identity, nested
 * rows follow their own changes), then `sync` may post-process them. When
 * the server says what a ref holds may be stale, `refresh` reloads it, or
 * without one a snapshot of the key's rows replaces it in place. Refs the
 * caller did not pass are created here and filled from a snapshot. Imports
 * only Vue, so it is tested without Nuxt.
 */
import { getCurrentScope, isReactive, onScopeDispose, ref, shallowRef, toRaw, toValue, triggerRef, watch, type MaybeRefOrGetter, type Ref } from 'vue'
import { compareLsn, type Lsn } from '../shared/lsn'
import type { LiveSyncModelName, LiveSyncModelRow } from '../shared/index'
import { forgetListIndex } from '../shared/patch'
import { patchRow, patchRows, type IncludeKind, type NestedInclude, type RowsSpec } from '../shared/patch-nested'
import { keyString, rowId, type Change, type KeyValue, type ResyncMessage, type Row, type SnapshotModel, type TxMessage } from '../shared/protocol'
import { replaceList, replaceObject } from '../shared/replace-rows'
import type { ServerSnapshot } from '../shared/server-snapshot'
import type { LiveSyncClient, LiveSyncStatus } from './live-sync-client'

/** How the rows of one association (its alias is the `include` entry's name) nest in each watched row. */
export interface LiveSyncInclude {
  /** The nested rows' Sequelize model name (checked against the app's watched models once they are known). */
  model: LiveSyncModelName
  /**
   * has-many: the nested row's attribute holding its parent's id
   * (`projectId` of a task); belongs-to: the watched row's attribute holding
   * the nested row's id (`projectId` of a task whose `project` is nested).
   */
  foreignKey: string | string[]
  /** `'hasMany'` (default): an array of rows; `'belongsTo'`: one row or null. */
  kind?: IncludeKind
}

/** A ref the page loaded itself (e.g. `useFetch` data) that live sync keeps live. */
export interface LiveSyncWatchRef<T = unknown> {
  /** A ref holding a list of rows, or a single row (or null). */
  ref: Ref<T>
  /** The Sequelize model name whose rows it holds (checked against the app's watched models once they are known). */
  model: LiveSyncModelName
  /** Associations nested in each row, kept live too. */
  include?: Record<string, LiveSyncInclude>
}

/** No ref: `useLiveSync` creates one (see `refs`) and fills it with the key's rows. */
export interface LiveSyncWatchModel<M extends LiveSyncModelName = LiveSyncModelName> {
  ref?: undefined
  /** The Sequelize model name; the ref holds the key's rows of it. */
  model: M
  /** Associations nested in each row (read through the model's Sequelize associations, and kept live). */
  include?: Record<string, LiveSyncInclude>
}

export type LiveSyncWatchTarget<T = unknown> = LiveSyncWatchRef<T> | LiveSyncWatchModel

/** What a watched ref holds once it holds data (`useFetch` data starts as `undefined`). */
export type LiveSyncWatchedValue<E> = E extends { ref: Ref<infer T> }
  ? Exclude<T, undefined>
  : E extends { model: infer M } ? LiveSyncModelRow<M>[] : never

/** The row type of a watched ref: the element of a list, or the single row. */
export type LiveSyncRowOf<E> = LiveSyncWatchedValue<E> extends ReadonlyArray<infer R> ? R : Exclude<LiveSyncWatchedValue<E>, null>

/** The changes `sync` gets: of the ref's rows, and of nested rows when it has an `include`. */
export type LiveSyncOpsOf<E> = E extends { include: object } ? Change[] : Change<LiveSyncRowOf<E>>[]

/**
 * The arguments of `sync`, one tuple per watched name, so that testing
 * `name` narrows `updated` and `ops` to that ref's types.
 */
export type LiveSyncSyncArgs<W> = {
  [N in keyof W & string]: [name: N, updated: LiveSyncWatchedValue<W[N]>, ops: LiveSyncOpsOf<W[N]>]
}[keyof W & string]

/** The refs created for the watch entries without a `ref`, by name. */
export type LiveSyncRefs<W> = {
  [N in keyof W as W[N] extends { ref: object } ? never : N]: Ref<LiveSyncWatchedValue<W[N]>>
}

export interface UseLiveSyncOptions<W extends Record<string, LiveSyncWatchTarget> = Record<string, LiveSyncWatchTarget>> {
  watch: W
  /**
   * Called once per committed transaction for each watched name whose rows
   * changed, after the ref was patched (and once after a snapshot replaced
   * its rows). Return (or resolve to) a value to make it the ref's value;
   * `undefined` keeps `updated`. Declare all three parameters,
   * `(name, updated, ops) => …`: testing `name` then narrows `updated` and
   * `ops` to that ref's types (TypeScript only narrows a callback that takes
   * the whole tuple).
   */
  sync?: (...args: LiveSyncSyncArgs<W>) => unknown
  /**
   * Reloads the page's data when the server says what it holds may be stale
   * (a TRUNCATE, a replication gap, a cursor older than the server's
   * history). Pass `refresh` from `useFetch`/`useAsyncData`. Without it the
   * watched refs are replaced in place by a snapshot of the key's rows.
   */
  refresh?: () => unknown
}

export interface UseLiveSyncReturn<W = Record<string, LiveSyncWatchTarget>> {
  status: Ref<LiveSyncStatus>
  error: Ref<Error | null>
  /** The refs created for watch entries without a `ref` (the key's rows of their model). */
  refs: LiveSyncRefs<W>
  /** Unsubscribes for good (also done when the component's scope is disposed). */
  stop: () => void
}

/** `useLiveSync`'s result: usable at once, and awaitable (resolves once created refs hold their first rows). */
export type UseLiveSyncResult<W = Record<string, LiveSyncWatchTarget>> = UseLiveSyncReturn<W> & Promise<UseLiveSyncReturn<W>>

/** A server render's snapshot for a key (the rows of the watch entries without a `ref`). */
export interface PreloadedSnapshot {
  key: string
  snapshot: ServerSnapshot
}

interface Target {
  name: string
  ref: Ref<unknown>
  /** Created here (no `ref` given): filled from snapshots. */
  owned: boolean
  model: string
  includes: NestedInclude[]
  /** What a snapshot of it reads. */
  part: SnapshotModel
  /** Batches at or before this cursor are in the snapshot it holds. */
  covered: Lsn | null
}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  !!value && typeof (value as PromiseLike<unknown>).then === 'function'

function includesOf(entry: LiveSyncWatchTarget): NestedInclude[] {
  return Object.entries(entry.include ?? {}).map(([name, include]) => ({
    name,
    model: include.model,
    foreignKey: include.foreignKey,
    kind: include.kind ?? 'hasMany',
  }))
}

function partOf(entry: LiveSyncWatchTarget): SnapshotModel {
  const include = Object.keys(entry.include ?? {})
  return include.length > 0 ? { model: entry.model, include } : { model: entry.model }
}

/** The snapshot request for some watch entries: one part per distinct model and include, and each entry's part. */
function snapshotParts(parts: readonly SnapshotModel[]): { models: SnapshotModel[], indexes: number[] } {
  const models: SnapshotModel[] = []
  const seen = new Map<string, number>()
  const indexes = parts.map((part) => {
    const signature = JSON.stringify(part)
    let index = seen.get(signature)
    if (index === undefined) {
      seen.set(signature, (index = models.length))
      models.push(part)
    }
    return index
  })
  return { models, indexes }
}

/** What a server render reads for the entries without a `ref` (the composable and the binding agree on it). */
export function ownedSnapshotModels(watch: Record<string, LiveSyncWatchTarget>): SnapshotModel[] {
  return snapshotParts(Object.values(watch).filter(entry => !entry.ref).map(partOf)).models
}

/** The rows of each entry without a `ref`, by name, in a snapshot of `ownedSnapshotModels(watch)`. */
export function ownedSnapshotRows(watch: Record<string, LiveSyncWatchTarget>, rows: Row[][]): Record<string, Row[]> {
  const owned = Object.entries(watch).filter(([, entry]) => !entry.ref)
  const { indexes } = snapshotParts(owned.map(([, entry]) => partOf(entry)))
  return Object.fromEntries(owned.map(([name], i) => [name, rows[indexes[i]!] ?? []]))
}

/**
 * @param client the tab's connection (created on first use)
 * @param key the subscription key (a value, ref or getter)
 * @param options what to keep live and how
 * @param since the cursor the page's data is at least as new as, read when a key is subscribed
 * @param preloaded the server render's snapshot of the entries without a `ref`, used once for its key
 */
export function bindLiveSync<const W extends Record<string, LiveSyncWatchTarget>>(
  client: () => LiveSyncClient,
  key: MaybeRefOrGetter<KeyValue | null | undefined>,
  options: UseLiveSyncOptions<W>,
  since: () => Lsn | null = () => null,
  preloaded: PreloadedSnapshot | null = null,
): UseLiveSyncResult<W> {
  const status = ref<LiveSyncStatus>('idle')
  const error = shallowRef<Error | null>(null)
  const targets: Target[] = Object.entries(options.watch).map(([name, entry]) => ({
    name,
    ref: (entry.ref ?? shallowRef<Row[]>([])) as Ref<unknown>,
    owned: !entry.ref,
    model: entry.model,
    includes: includesOf(entry),
    part: partOf(entry),
    covered: null,
  }))
  const refs = Object.fromEntries(targets.filter(target => target.owned).map(target => [target.name, target.ref])) as LiveSyncRefs<W>
  const watched = targets.map(target => ({ name: target.name, model: target.model }))
  let unsubscribe: (() => void) | null = null
  let generation = 0
  // Batches are applied strictly in order, also across an async `sync`/`refresh`/snapshot.
  let queue: Promise<void> | null = null
  let markReady!: () => void
  const ready = new Promise<void>(resolve => (markReady = resolve))

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

  const idsOf = (model: string): readonly string[] => client().models[model]?.id ?? ['id']
  const specOf = (target: Target): RowsSpec => ({ model: target.model, ids: idsOf(target.model), includes: target.includes, idsOf })

  /** Makes `value` (what `sync` gave) the ref's value, unless the binding moved on meanwhile. */
  const assign = (target: Ref<unknown>, value: unknown, current: number) => {
    // An async `sync` of a key we left must not overwrite the new key's data.
    if (value === undefined || current !== generation) return
    if (toRaw(value) !== toRaw(target.value)) target.value = value
    // The same array, reordered or edited in place: only a reactive value notices that.
    else if (!isReactive(target.value)) triggerRef(target)
  }

  /** Calls `sync` for each changed name; a promise when some result is one. */
  const runSync = (synced: Array<[Target, Change[]]>, current: number): void | Promise<void> => {
    if (!options.sync) return
    const pending: Promise<void>[] = []
    for (const [{ name, ref: target }, ops] of synced) {
      const result = (options.sync as (name: string, updated: unknown, ops: Change[]) => unknown)(name, target.value, ops)
      // Resolving to undefined after editing `updated` in place still needs a shallow ref triggered.
      if (isThenable(result)) pending.push(Promise.resolve(result).then(value => assign(target, value === undefined ? target.value : value, current)))
      else assign(target, result, current)
    }
    if (pending.length) return Promise.all(pending).then(() => {})
  }

  const apply = (message: TxMessage, current: number): void | Promise<void> => {
    const byModel = new Map<string, Change[]>()
    for (const change of message.changes) {
      const list = byModel.get(change.model)
      if (list) list.push(change)
      else byModel.set(change.model, [change])
    }
    const synced: Array<[Target, Change[]]> = []
    for (const target of targets) {
      // Already in the snapshot the ref holds.
      if (target.covered && compareLsn(message.cursor, target.covered) <= 0) continue
      const ops = patchTarget(target.ref, byModel, specOf(target))
      if (ops) synced.push([target, ops])
    }
    return runSync(synced, current)
  }

  /** Replaces the targets' rows with a snapshot of the key, then runs `sync` once per changed name. */
  const load = async (selected: Target[], value: KeyValue, current: number): Promise<void> => {
    const { models, indexes } = snapshotParts(selected.map(target => target.part))
    let snapshot
    try {
      snapshot = await client().snapshot(value, models)
    }
    catch (cause) {
      // Asked for a key we left: nothing to load any more.
      if (current === generation) fail(cause)
      return
    }
    if (current !== generation) return
    const synced: Array<[Target, Change[]]> = []
    selected.forEach((target, i) => {
      const ops = replaceTarget(target, snapshot.rows[indexes[i]!] ?? [], specOf(target))
      target.covered = snapshot.cursor
      if (ops.length > 0) synced.push([target, ops])
    })
    return runSync(synced, current)
  }

  // The refreshed data may be the same array refilled in place: index it anew.
  const forgetIndexes = (refreshed: Target[]) => {
    for (const target of refreshed) {
      const value = target.ref.value
      if (Array.isArray(value)) forgetListIndex(toRaw(value))
    }
  }

  const resync = (message: ResyncMessage, value: KeyValue, current: number): void | Promise<void> => {
    const work: Array<void | Promise<void>> = []
    // With `refresh`, the page reloads its own data, as it always did.
    if (options.refresh) work.push(Promise.resolve(options.refresh()).then(() => forgetIndexes(targets.filter(target => !target.owned))))
    // The rest from a snapshot, unless one read after the event already shows its outcome.
    const reloaded = targets.filter(target => (target.owned || !options.refresh)
      && !(target.covered && message.cursor && compareLsn(message.cursor, target.covered) <= 0))
    if (reloaded.length > 0) work.push(load(reloaded, value, current))
    if (work.some(isThenable)) return Promise.all(work).then(() => {})
  }

  const subscribe = (value: KeyValue | null | undefined) => {
    unsubscribe?.()
    unsubscribe = null
    const current = ++generation
    for (const target of targets) target.covered = null
    if (value === null || value === undefined || value === '') {
      status.value = 'idle'
      error.value = null
      for (const target of targets) if (target.owned) target.ref.value = []
      markReady()
      return
    }
    const owned = targets.filter(target => target.owned)
    let from = since()
    let toLoad = owned
    const preload = preloaded?.key === keyString(value) ? preloaded.snapshot : null
    preloaded = null
    if (preload) {
      // Rendered on the server: its rows are in the payload, and changes after its cursor are replayed.
      client().learnModels(preload.models)
      const rows = ownedSnapshotRows(options.watch, preload.rows)
      for (const target of owned) {
        target.ref.value = rows[target.name] ?? []
        target.covered = preload.cursor
      }
      from = owned.length === targets.length ? preload.cursor : minCursor(from, preload.cursor)
      toLoad = []
    }
    // Only refs it fills itself: the snapshot holds everything before now.
    else if (owned.length > 0 && owned.length === targets.length) from = null
    status.value = 'connecting'
    unsubscribe = client().subscribe(value, {
      watch: watched,
      // A batch for a key we left is dropped (the queue may still hold it).
      batch: message => serial(() => (current === generation ? apply(message, current) : undefined)),
      resync: message => serial(() => (current === generation ? resync(message, value, current) : undefined)),
      status: (next, cause) => {
        if (current !== generation) return
        status.value = next
        error.value = cause
      },
    }, from)
    if (toLoad.length === 0) return markReady()
    // First in the queue: the key's batches wait behind it, those it covers are dropped.
    serial(() => load(toLoad, value, current).finally(markReady))
  }

  const stopWatching = watch(() => toValue(key), subscribe, { immediate: true })

  const stop = () => {
    stopWatching()
    generation++
    unsubscribe?.()
    unsubscribe = null
    status.value = 'idle'
    markReady()
  }
  if (getCurrentScope()) onScopeDispose(stop)
  const result: UseLiveSyncReturn<W> = { status, error, refs, stop }
  return Object.assign(ready.then(() => result), result)
}

/** The older cursor; null (no known position) gives way to the other. */
function minCursor(a: Lsn | null, b: Lsn | null): Lsn | null {
  if (!a) return b
  if (!b) return a
  return compareLsn(a, b) <= 0 ? a : b
}

/**
 * Patches one watched ref; returns the changes that concerned it, or null
 * when it was not touched. A deep ref's value is a reactive proxy, patched
 * through it (fine-grained updates); a value that is not reactive — a
 * shallowRef's, or Nuxt 4's `useFetch` data (a writable computed over a
 * shallowRef, which `isShallow` does not recognize) — is patched as is and
 * its ref triggered once.
 */
function patchTarget(holder: Ref<unknown>, byModel: ReadonlyMap<string, Change[]>, spec: RowsSpec): Change[] | null {
  const value = holder.value
  if (Array.isArray(value)) {
    const ops = patchRows(value as Row[], byModel, spec, toRaw(value))
    if (ops && !isReactive(value)) triggerRef(holder)
    return ops
  }
  if (value && typeof value === 'object') {
    const result = patchRow(value as Row, byModel, spec)
    if (!result.ops) return null
    if (result.value !== value) holder.value = result.value
    else if (!isReactive(value)) triggerRef(holder)
    return result.ops
  }
  return null
}

/** Replaces a watched ref's rows with a snapshot's, in place; returns the differences. */
function replaceTarget(target: Target, rows: Row[], spec: RowsSpec): Change[] {
  const holder = target.ref
  const value = holder.value
  if (Array.isArray(value)) {
    const ops = replaceList(value as Row[], rows, spec, toRaw(value))
    if (ops.length > 0 && !isReactive(value)) triggerRef(holder)
    return ops
  }
  if (value && typeof value === 'object') {
    const result = replaceObject(value as Row, rows, spec)
    if (result.value !== value) holder.value = result.value
    else if (result.ops.length > 0 && !isReactive(value)) triggerRef(holder)
    return result.ops
  }
  if (target.owned) {
    holder.value = rows
    return rows.map(row => ({ op: 'insert', model: spec.model, id: rowId(row, spec.ids), row }))
  }
  // A ref not loaded yet (or failed to load) is left to its loader.
  return []
}
