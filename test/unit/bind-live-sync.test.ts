import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { computed, effectScope, nextTick, ref, shallowRef, toRaw, watch } from 'vue'
import { bindLiveSync, type UseLiveSyncOptions } from '../../src/runtime/app/bind-live-sync'
import type { Lsn } from '../../src/runtime/shared/lsn'
import type { Change, KeyValue, Row } from '../../src/runtime/shared/protocol'
import { fakeClient } from './fake-socket'
import { compositeChange, del, ins, tx, upd } from './helpers'

/** A promise with its resolve function, to finish async work when the test says so. */
function deferred<T>() {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

/** Lets promise callbacks run (no timers involved). */
const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve()
}

/** The watched models as the server's `subscribed` frame describes them. */
const models = { Task: { id: ['id'] }, Project: { id: ['id'] }, Membership: { id: ['userId', 'orgId'] } }

/** bindLiveSync hosted in an effect scope, on a client whose fake socket the test drives. */
function bind<W extends UseLiveSyncOptions['watch']>(key: Parameters<typeof bindLiveSync>[1], options: UseLiveSyncOptions<W>, since?: () => Lsn | null) {
  const setup = fakeClient()
  const clientFactory = vi.fn(() => setup.client)
  const scope = effectScope()
  const result = scope.run(() => bindLiveSync(clientFactory, key, options, since))!
  const frames = () => (setup.sockets.length ? setup.socket().take() : [])
  return {
    ...setup,
    ...result,
    /** The awaitable result itself. */
    result,
    scope,
    clientFactory,
    frames,
    /** The socket opens and `key` goes live at `cursor`. */
    goLive(value: string, cursor = '0/10') {
      const socket = setup.socket()
      if (socket.readyState !== 1) socket.open({ cursor })
      socket.receive({ type: 'subscribed', key: value, cursor, replayed: 0, models })
    },
    /** A transaction for `value` reaches the page. */
    send(value: string, cursor: string, changes: Change[]) {
      setup.socket().receive(tx(value, cursor, changes))
    },
  }
}

let errorSpy: ReturnType<typeof vi.spyOn>
let warnSpy: ReturnType<typeof vi.spyOn>
beforeEach(() => {
  errorSpy = vi.spyOn(console, 'error').mockImplementation(() => {})
  warnSpy = vi.spyOn(console, 'warn').mockImplementation(() => {})
})
afterEach(() => {
  vi.restoreAllMocks()
})

const task = (id: number, title = `task ${id}`) => ({ id, title, done: false })

describe('list refs', () => {
  it('patches a ref([]) in place: rows keep their identity, the array stays the same', () => {
    const tasks = ref<Row[]>([task(1), task(2)])
    const array = tasks.value
    const first = tasks.value[0]
    const b = bind('org', { watch: { tasks: { ref: tasks, model: 'Task' } } })
    b.goLive('org')
    b.send('org', '0/11', [upd({ ...task(1), done: true }), ins(task(3)), del(task(2))])
    expect(tasks.value).toBe(array)
    expect(tasks.value[0]).toBe(first)
    expect(tasks.value).toEqual([{ ...task(1), done: true }, task(3)])
    b.scope.stop()
  })

  it('updates what depends on a ref([]) list, row by row', () => {
    const tasks = ref<Row[]>([task(1), task(2)])
    const doneCount = computed(() => tasks.value.filter(row => row.done).length)
    const b = bind('org', { watch: { tasks: { ref: tasks, model: 'Task' } } })
    b.goLive('org')
    expect(doneCount.value).toBe(0)
    b.send('org', '0/11', [upd({ ...task(2), done: true })])
    expect(doneCount.value).toBe(1)
    b.scope.stop()
  })

  it('triggers the watchers of a shallowRef list (Nuxt 4 useFetch data) after a patch', async () => {
    const data = shallowRef<Row[] | null>([task(1)])
    const raw = data.value
    const titles: string[] = []
    const stopWatch = watch(data, value => titles.push(value!.map(row => row.title).join(',')))
    const count = computed(() => data.value!.length)
    expect(count.value).toBe(1)
    const b = bind('org', { watch: { tasks: { ref: data, model: 'Task' } } })
    b.goLive('org')
    b.send('org', '0/11', [ins(task(2, 'second'))])
    expect(count.value).toBe(2)
    await nextTick()
    b.send('org', '0/12', [upd(task(1, 'first'))])
    await nextTick()
    expect(titles).toEqual(['task 1,second', 'first,second'])
    expect(data.value).toBe(raw)
    stopWatch()
    b.scope.stop()
  })

  it('re-renders what reads Nuxt 4 useFetch data: a writable computed over a shallowRef', async () => {
    // How Nuxt 4.4 hands out `data`: isShallow() is false for it, yet its value is not reactive.
    const state = shallowRef<Row[] | null>([task(1)])
    const data = computed({ get: () => state.value, set: (value) => {
      state.value = value
    } })
    const list = shallowRef<Row | null>({ id: 1, title: 'task 1' })
    const single = computed({ get: () => list.value, set: (value) => {
      list.value = value
    } })
    const rendered: string[] = []
    const stopList = watch(data, value => rendered.push(`list:${value!.map(row => row.title).join(',')}`), { deep: true })
    const stopOne = watch(single, value => rendered.push(`one:${value?.title}`), { deep: true })
    const b = bind('org', { watch: { tasks: { ref: data, model: 'Task' }, current: { ref: single, model: 'Task' } } })
    b.goLive('org')
    b.send('org', '0/11', [upd(task(1, 'renamed'))])
    await nextTick()
    expect(rendered.sort()).toEqual(['list:renamed', 'one:renamed'])
    stopList()
    stopOne()
    b.scope.stop()
  })

  it('leaves a list that is not loaded yet (null) alone', () => {
    const data = shallowRef<Row[] | null>(null)
    const sync = vi.fn()
    const b = bind('org', { watch: { tasks: { ref: data, model: 'Task' } }, sync })
    b.goLive('org')
    b.send('org', '0/11', [ins(task(1))])
    expect(data.value).toBeNull()
    expect(sync).not.toHaveBeenCalled()
    b.scope.stop()
  })

  it('patches rows of a model with a composite id, as the subscribed frame describes it', () => {
    const attributes = ['userId', 'orgId']
    const member = { userId: 1, orgId: 1, role: 'member' }
    const members = ref<Row[]>([member, { userId: 2, orgId: 1, role: 'member' }])
    const kept = members.value[0]
    const b = bind('org', { watch: { members: { ref: members, model: 'Membership' } } })
    b.goLive('org')
    b.send('org', '0/11', [
      compositeChange('update', { userId: 1, orgId: 1, role: 'admin' }, attributes),
      compositeChange('delete', { userId: 2, orgId: 1, role: 'member' }, attributes),
    ])
    expect(members.value).toEqual([{ userId: 1, orgId: 1, role: 'admin' }])
    expect(members.value[0]).toBe(kept)
    b.scope.stop()
  })
  it('patches a subscription\'s replay, which precedes `subscribed`, with the id attributes `subscribed` brings', () => {
    const attributes = ['userId', 'orgId']
    const members = ref<Row[]>([{ userId: 1, orgId: 1, role: 'member' }, { userId: 2, orgId: 1, role: 'member' }])
    const kept = members.value[1]
    const b = bind('org', { watch: { members: { ref: members, model: 'Membership' } } }, () => '0/10')
    b.socket().open({ cursor: '0/12' })
    expect(b.frames()).toEqual([{ type: 'sub', key: 'org', since: '0/10' }])
    // Replayed for the sub: with the default id (`id`) both rows would look alike.
    b.send('org', '0/11', [compositeChange('update', { userId: 2, orgId: 1, role: 'admin' }, attributes)])
    expect(members.value[1]).toEqual({ userId: 2, orgId: 1, role: 'member' }) // held until subscribed
    b.socket().receive({ type: 'subscribed', key: 'org', cursor: '0/12', replayed: 1, models })
    expect(members.value).toEqual([{ userId: 1, orgId: 1, role: 'member' }, { userId: 2, orgId: 1, role: 'admin' }])
    expect(members.value[1]).toBe(kept)
    b.scope.stop()
  })
})

describe('single-object refs', () => {
  it('merges an update of its row into the same object', async () => {
    const project = ref<Row | null>({ id: 7, name: 'old', archived: false })
    const raw = toRaw(project.value)
    const names: string[] = []
    watch(() => project.value?.name as string, name => names.push(name))
    const b = bind('org', { watch: { project: { ref: project, model: 'Project' } } })
    b.goLive('org')
    b.send('org', '0/11', [upd({ id: 7, name: 'new', archived: false }, 'Project')])
    await nextTick()
    expect(toRaw(project.value)).toBe(raw)
    expect(project.value).toEqual({ id: 7, name: 'new', archived: false })
    expect(names).toEqual(['new'])
    b.scope.stop()
  })

  it('triggers the watchers of a shallowRef object after an update', async () => {
    const project = shallowRef<Row | null>({ id: 7, name: 'old' })
    let calls = 0
    watch(project, () => calls++)
    const b = bind('org', { watch: { project: { ref: project, model: 'Project' } } })
    b.goLive('org')
    b.send('org', '0/11', [upd({ id: 7, name: 'new' }, 'Project')])
    await nextTick()
    expect(calls).toBe(1)
    expect(project.value).toEqual({ id: 7, name: 'new' })
    b.scope.stop()
  })

  it('becomes null when its row is deleted', () => {
    const project = ref<Row | null>({ id: 7, name: 'p' })
    const b = bind('org', { watch: { project: { ref: project, model: 'Project' } } })
    b.goLive('org')
    b.send('org', '0/11', [del({ id: 7, name: 'p' }, 'Project')])
    expect(project.value).toBeNull()
    b.scope.stop()
  })

  it('is not touched by changes of other rows or other models', async () => {
    const project = shallowRef<Row | null>({ id: 7, name: 'p' })
    const before = project.value
    let calls = 0
    watch(project, () => calls++)
    const sync = vi.fn()
    const b = bind('org', { watch: { project: { ref: project, model: 'Project' } }, sync })
    b.goLive('org')
    b.send('org', '0/11', [upd({ id: 8, name: 'other' }, 'Project'), del({ id: 9 }, 'Project'), upd({ id: 7, name: 'task with the same id' }, 'Task')])
    await nextTick()
    expect(project.value).toBe(before)
    expect(project.value).toEqual({ id: 7, name: 'p' })
    expect(calls).toBe(0)
    expect(sync).not.toHaveBeenCalled()
    b.scope.stop()
  })
})

describe('sync', () => {
  it('is called once per transaction for each name whose rows changed, with the patched value and its changes', () => {
    const tasks = ref<Row[]>([task(1)])
    const project = ref<Row | null>({ id: 7, name: 'p' })
    const calls: Array<[string, unknown, Change[]]> = []
    const b = bind('org', {
      watch: { tasks: { ref: tasks, model: 'Task' }, project: { ref: project, model: 'Project' } },
      sync: (name, updated, ops) => {
        calls.push([name, updated, ops])
      },
    })
    b.goLive('org')
    const taskChanges = [ins(task(2)), ins(task(3)), upd(task(1, 'renamed'))]
    b.send('org', '0/11', [...taskChanges, upd({ id: 8, name: 'not ours' }, 'Project')])
    expect(calls).toEqual([['tasks', tasks.value, taskChanges]])
    expect(calls[0]![1]).toBe(tasks.value)

    const projectChange = upd({ id: 7, name: 'renamed' }, 'Project')
    b.send('org', '0/12', [projectChange, del(task(3))])
    expect(calls.slice(1).map(([name]) => name).sort()).toEqual(['project', 'tasks'])
    expect(calls.find(([name], i) => i > 0 && name === 'project')![2]).toEqual([projectChange])
    b.scope.stop()
  })

  it('is not called for a replayed transaction that changes nothing', () => {
    const tasks = ref<Row[]>([])
    const sync = vi.fn()
    const b = bind('org', { watch: { tasks: { ref: tasks, model: 'Task' } }, sync })
    b.goLive('org')
    b.send('org', '0/11', [ins(task(1))])
    b.send('org', '0/11', [ins(task(1))]) // the same transaction again (a resume from an older cursor)
    expect(sync).toHaveBeenCalledTimes(1)
    expect(tasks.value).toEqual([task(1)])
    b.scope.stop()
  })

  it('replaces the ref with what it returns, and keeps it when it returns undefined', () => {
    const tasks = ref<Row[]>([task(2, 'b')])
    const byTitle = (x: Row, y: Row) => String(x.title).localeCompare(String(y.title))
    let mode: 'sorted copy' | 'keep' = 'sorted copy'
    const b = bind('org', {
      watch: { tasks: { ref: tasks, model: 'Task' } },
      sync: (_name, updated: Row[]) => (mode === 'sorted copy' ? [...updated].sort(byTitle) : undefined),
    })
    b.goLive('org')
    const before = tasks.value
    b.send('org', '0/11', [ins(task(1, 'a'))])
    expect(tasks.value).not.toBe(before)
    expect(tasks.value.map(row => row.title)).toEqual(['a', 'b'])

    mode = 'keep'
    const sorted = tasks.value
    b.send('org', '0/12', [ins(task(0, 'c'))])
    expect(tasks.value).toBe(sorted)
    expect(tasks.value.map(row => row.title)).toEqual(['a', 'b', 'c'])
    b.scope.stop()
  })

  it('uses the value a returned promise resolves to, and applies later transactions after it, in order', async () => {
    const tasks = ref<Row[]>([])
    const pending: Array<ReturnType<typeof deferred<Row[] | undefined>>> = []
    const seen: string[][] = []
    const b = bind('org', {
      watch: { tasks: { ref: tasks, model: 'Task' } },
      sync: (_name, updated: Row[]) => {
        seen.push(updated.map(row => String(row.title)))
        const next = deferred<Row[] | undefined>()
        pending.push(next)
        return next.promise
      },
    })
    b.goLive('org')
    b.send('org', '0/11', [ins(task(1, 'one'))])
    b.send('org', '0/12', [ins(task(2, 'two'))])
    await flush()
    expect(seen).toEqual([['one']]) // the second transaction waits
    expect(tasks.value.map(row => row.title)).toEqual(['one'])

    pending[0]!.resolve([{ ...task(1, 'one'), decorated: true }])
    await flush()
    expect(seen).toEqual([['one'], ['one', 'two']])
    expect(tasks.value[0]).toMatchObject({ decorated: true })

    pending[1]!.resolve(undefined)
    await flush()
    expect(tasks.value.map(row => row.title)).toEqual(['one', 'two'])
    b.send('org', '0/13', [del(task(1))])
    expect(tasks.value.map(row => row.title)).toEqual(['two'])
    b.scope.stop()
  })

  it('triggers a shallowRef again when an async sync resolves to the same array, reordered in place', async () => {
    const data = shallowRef<Row[]>([task(2, 'b')])
    const gate = deferred<undefined>()
    const orders: string[] = []
    watch(data, value => orders.push(value.map(row => row.title).join(',')))
    const b = bind('org', {
      watch: { tasks: { ref: data, model: 'Task' } },
      sync: async (_name, updated: Row[]) => {
        await gate.promise
        return updated.sort((x, y) => String(x.title).localeCompare(String(y.title)))
      },
    })
    b.goLive('org')
    b.send('org', '0/11', [ins(task(1, 'a'))])
    await nextTick()
    gate.resolve(undefined)
    await flush()
    await nextTick()
    expect(orders.at(-1)).toBe('a,b')
    b.scope.stop()
  })

  it('reports an error thrown by sync and goes on with the next transaction', () => {
    const tasks = ref<Row[]>([])
    let fail = true
    const b = bind('org', {
      watch: { tasks: { ref: tasks, model: 'Task' } },
      sync: () => {
        if (fail) throw new Error('sync broke')
      },
    })
    b.goLive('org')
    b.send('org', '0/11', [ins(task(1))])
    expect(b.error.value?.message).toBe('sync broke')
    expect(errorSpy).toHaveBeenCalled()
    fail = false
    b.send('org', '0/12', [ins(task(2))])
    expect(tasks.value.map(row => row.id)).toEqual([1, 2])
    b.scope.stop()
  })
})

describe('the key', () => {
  it('moves the subscription when a key ref changes', async () => {
    const key = ref<KeyValue>('a')
    const tasks = ref<Row[]>([])
    const b = bind(key, { watch: { tasks: { ref: tasks, model: 'Task' } } })
    b.goLive('a')
    expect(b.frames()).toEqual([{ type: 'sub', key: 'a' }])
    expect(b.status.value).toBe('live')

    key.value = 'b'
    await nextTick()
    expect(b.frames()).toEqual([{ type: 'unsub', key: 'a' }, { type: 'sub', key: 'b' }])
    expect(b.status.value).toBe('connecting')
    b.send('a', '0/11', [ins(task(1))]) // late frame of the old key
    b.socket().receive({ type: 'unsubscribed', key: 'a' })
    b.goLive('b')
    b.send('b', '0/12', [ins(task(2))])
    expect(tasks.value.map(row => row.id)).toEqual([2])
    expect(b.status.value).toBe('live')
    b.scope.stop()
  })

  it('follows a getter key', async () => {
    const route = ref({ params: { id: '1' } })
    const b = bind(() => route.value.params.id, { watch: {} })
    b.goLive('1')
    route.value = { params: { id: '2' } }
    await nextTick()
    expect(b.frames()).toEqual([{ type: 'sub', key: '1' }, { type: 'unsub', key: '1' }, { type: 'sub', key: '2' }])
    b.scope.stop()
  })

  it('subscribes to nothing while the key is null, undefined or empty, with status idle', async () => {
    const key = ref<KeyValue | null | undefined>(null)
    const b = bind(key, { watch: {} })
    expect(b.status.value).toBe('idle')
    expect(b.clientFactory).not.toHaveBeenCalled()
    expect(b.sockets).toHaveLength(0)

    key.value = 'a'
    await nextTick()
    b.goLive('a')
    expect(b.frames()).toEqual([{ type: 'sub', key: 'a' }])
    expect(b.status.value).toBe('live')

    for (const nothing of [undefined, '', null]) {
      key.value = 'x'
      await nextTick()
      key.value = nothing
      await nextTick()
      expect(b.status.value).toBe('idle')
      expect(b.error.value).toBeNull()
    }
    expect(b.client.keyCount).toBe(0)
    b.scope.stop()
  })

  it('subscribes with the cursor the since function gives when the key is subscribed', async () => {
    const key = ref('a')
    let cursor: Lsn | null = '0/20'
    const b = bind(key, { watch: {} }, () => cursor)
    b.goLive('a')
    cursor = '0/30'
    key.value = 'b'
    await nextTick()
    expect(b.frames()).toEqual([{ type: 'sub', key: 'a', since: '0/20' }, { type: 'unsub', key: 'a' }, { type: 'sub', key: 'b', since: '0/30' }])
    b.scope.stop()
  })

  it('does not let a pending async sync of the old key overwrite the ref once the key changed', async () => {
    const key = ref('a')
    const tasks = ref<Row[]>([])
    const gate = deferred<Row[]>()
    const b = bind(key, { watch: { tasks: { ref: tasks, model: 'Task' } }, sync: () => gate.promise })
    b.goLive('a')
    b.send('a', '0/11', [ins(task(1, 'of a'))])
    key.value = 'b'
    await nextTick()
    const dataOfB = [task(5, 'of b')]
    tasks.value = dataOfB // the page loaded key b's rows
    gate.resolve([task(1, 'of a, sorted')])
    await flush()
    expect(tasks.value).toEqual(dataOfB)
    b.scope.stop()
  })
})

describe('lifecycle and resync', () => {
  it('unsubscribes and stops patching when its effect scope is disposed', () => {
    const tasks = ref<Row[]>([])
    const b = bind('org', { watch: { tasks: { ref: tasks, model: 'Task' } } })
    b.goLive('org')
    b.frames()
    b.scope.stop()
    expect(b.frames()).toEqual([{ type: 'unsub', key: 'org' }])
    expect(b.status.value).toBe('idle')
    b.send('org', '0/11', [ins(task(1))])
    expect(tasks.value).toEqual([])
  })

  it('stop() unsubscribes too', () => {
    const b = bind('org', { watch: {} })
    b.goLive('org')
    b.frames()
    b.stop()
    expect(b.frames()).toEqual([{ type: 'unsub', key: 'org' }])
    b.scope.stop()
    expect(b.frames()).toEqual([])
  })

  it('follows the client\'s status and error', () => {
    const b = bind('org', { watch: {} })
    expect(b.status.value).toBe('connecting')
    b.goLive('org')
    expect(b.status.value).toBe('live')
    b.socket().receive({ type: 'error', code: 'forbidden', message: 'not yours', key: 'org' })
    expect(b.status.value).toBe('error')
    expect(b.error.value?.message).toBe('not yours')
    b.scope.stop()
  })

  it('calls refresh on a resync', () => {
    const refresh = vi.fn()
    const b = bind('org', { watch: {}, refresh })
    b.goLive('org')
    b.socket().receive({ type: 'resync', key: 'org', cursor: '0/20', reason: 'truncate', tables: ['tasks'] })
    expect(refresh).toHaveBeenCalledTimes(1)
    b.scope.stop()
  })

  it('asks for a snapshot of the key when the data may be stale and there is no refresh', () => {
    const tasks = ref<Row[]>([task(1)])
    const b = bind('org', { watch: { tasks: { ref: tasks, model: 'Task' } } })
    b.goLive('org')
    b.frames()
    b.socket().receive({ type: 'resync', key: 'org', cursor: '0/20', reason: 'gap' })
    expect(b.frames()).toEqual([{ type: 'snapshot', key: 'org', models: [{ model: 'Task' }], ref: expect.any(Number) }])
    expect(warnSpy).not.toHaveBeenCalled()
    b.scope.stop()
  })

  it('applies transactions that arrive during an async refresh after it, on the refreshed data', async () => {
    const tasks = ref<Row[]>([task(1), task(2)])
    const reload = deferred<undefined>()
    const refresh = vi.fn(async () => {
      await reload.promise
      tasks.value = [task(1, 'reloaded'), task(3, 'reloaded')]
    })
    const b = bind('org', { watch: { tasks: { ref: tasks, model: 'Task' } }, refresh })
    b.goLive('org')
    b.socket().receive({ type: 'resync', key: 'org', cursor: '0/20', reason: 'truncate' })
    b.send('org', '0/21', [upd(task(3, 'after')), ins(task(4, 'after'))])
    await flush()
    expect(tasks.value.map(row => row.id)).toEqual([1, 2])

    reload.resolve(undefined)
    await flush()
    expect(tasks.value).toEqual([task(1, 'reloaded'), task(3, 'after'), task(4, 'after')])
    b.scope.stop()
  })

  it('patches a list that refresh refilled in place with as many rows', async () => {
    const tasks = ref<Row[]>([task(1), task(2)])
    const refresh = () => {
      tasks.value.splice(0, tasks.value.length, task(1, 'fresh'), task(2, 'fresh'))
    }
    const b = bind('org', { watch: { tasks: { ref: tasks, model: 'Task' } }, refresh })
    b.goLive('org')
    b.send('org', '0/11', [upd(task(1, 'x'))])
    b.socket().receive({ type: 'resync', key: 'org', cursor: '0/20', reason: 'truncate' })
    await flush()
    b.send('org', '0/21', [upd(task(2, 'after'))])
    expect(tasks.value).toEqual([task(1, 'fresh'), task(2, 'after')])
    b.scope.stop()
  })
})

/** The snapshot request the page sent last. */
function lastSnapshotRequest(frames: ReturnType<ReturnType<typeof bind>['frames']>) {
  const request = frames.filter(frame => frame.type === 'snapshot').at(-1)
  if (!request || request.type !== 'snapshot') throw new Error(`no snapshot request among ${JSON.stringify(frames)}`)
  return request
}

describe('snapshots (no refresh, and refs useLiveSync creates)', () => {
  it('replaces a stale list in place: kept rows keep identity, gone rows go, new rows are appended; sync runs once', async () => {
    const kept = task(1)
    const tasks = ref<Row[]>([kept, task(2)])
    const sync = vi.fn()
    const b = bind('org', { watch: { tasks: { ref: tasks, model: 'Task' } }, sync })
    b.goLive('org')
    b.frames()
    b.socket().receive({ type: 'resync', key: 'org', cursor: '0/20', reason: 'gap' })
    const request = lastSnapshotRequest(b.frames())
    // Live batches meanwhile wait: the one the snapshot covers is dropped, the later one applied after it.
    b.send('org', '0/21', [ins(task(7, 'covered'))])
    b.send('org', '0/30', [upd(task(3, 'after'))])
    b.socket().receive({ type: 'snapshot', key: 'org', ref: request.ref, index: 0, rows: [task(1, 'fresh')] })
    b.socket().receive({ type: 'snapshot', key: 'org', ref: request.ref, index: 0, rows: [task(3)] })
    expect(tasks.value).toEqual([kept, task(2)])
    b.socket().receive({ type: 'snapshotted', key: 'org', ref: request.ref, cursor: '0/25', models: { Task: { id: ['id'] } } })
    await flush()
    expect(tasks.value).toEqual([task(1, 'fresh'), task(3, 'after')])
    expect(toRaw(tasks.value[0])).toBe(kept)
    expect(sync.mock.calls.map(call => [call[0], (call[2] as Change[]).map(op => [op.op, op.id])])).toEqual([
      ['tasks', [['update', 1], ['insert', 3], ['delete', 2]]],
      ['tasks', [['update', 3]]],
    ])
    b.scope.stop()
  })

  it('merges a single row from the snapshot, or sets it to null when the row is gone', async () => {
    const current = ref<Row | null>(task(2))
    const b = bind('org', { watch: { current: { ref: current, model: 'Task' } } })
    b.goLive('org')
    const answer = (rows: Row[], cursor: string) => {
      b.socket().receive({ type: 'resync', key: 'org', cursor, reason: 'truncate' })
      const { ref: request } = lastSnapshotRequest(b.frames())
      b.socket().receive({ type: 'snapshot', key: 'org', ref: request, index: 0, rows })
      b.socket().receive({ type: 'snapshotted', key: 'org', ref: request, cursor, models: {} })
    }
    const row = current.value
    answer([task(1), task(2, 'renamed')], '0/20')
    await flush()
    expect(current.value).toBe(row)
    expect(current.value).toEqual(task(2, 'renamed'))
    answer([task(1)], '0/30')
    await flush()
    expect(current.value).toBeNull()
    b.scope.stop()
  })

  it('skips a resync that a snapshot read after it already covers', async () => {
    const tasks = ref<Row[]>([])
    const b = bind('org', { watch: { tasks: { ref: tasks, model: 'Task' } } })
    b.goLive('org')
    b.frames()
    b.socket().receive({ type: 'resync', key: 'org', cursor: '0/20', reason: 'gap' })
    b.socket().receive({ type: 'resync', key: 'org', cursor: '0/22', reason: 'gap' })
    const { ref: request } = lastSnapshotRequest(b.frames())
    b.socket().receive({ type: 'snapshotted', key: 'org', ref: request, cursor: '0/25', models: {} })
    await flush()
    expect(b.frames().filter(frame => frame.type === 'snapshot')).toEqual([])
    b.scope.stop()
  })

  it('with refresh, calls it for the refs it has and reads a snapshot for the refs it created', async () => {
    const tasks = ref<Row[]>([task(1)])
    const refresh = vi.fn()
    const b = bind('org', { watch: { tasks: { ref: tasks, model: 'Task' }, open: { model: 'OpenTask' } }, refresh })
    b.goLive('org')
    const load = lastSnapshotRequest(b.frames())
    b.socket().receive({ type: 'snapshotted', key: 'org', ref: load.ref, cursor: '0/10', models: {} })
    await flush()
    b.socket().receive({ type: 'resync', key: 'org', cursor: '0/20', reason: 'truncate' })
    await flush()
    expect(refresh).toHaveBeenCalledTimes(1)
    expect(lastSnapshotRequest(b.frames()).models).toEqual([{ model: 'OpenTask' }])
    b.scope.stop()
  })

  it('reports a refused snapshot as the binding\'s error', async () => {
    const b = bind('org', { watch: { tasks: { ref: ref<Row[]>([]), model: 'Task' } } })
    b.goLive('org')
    b.socket().receive({ type: 'resync', key: 'org', cursor: '0/20', reason: 'gap' })
    const { ref: request } = lastSnapshotRequest(b.frames())
    b.socket().receive({ type: 'error', code: 'internal', message: 'the database is down', key: 'org', ref: request })
    await flush()
    expect(b.error.value?.message).toBe('the database is down')
    b.scope.stop()
  })

  it('creates the refs of entries without a ref and fills them from a snapshot: subscribed from now, awaitable', async () => {
    const b = bind('org', { watch: { tasks: { model: 'Task' }, projects: { model: 'Project', include: { tasks: { model: 'Task', foreignKey: 'projectId' } } } } })
    let loaded = false
    void b.result.then(() => (loaded = true))
    expect(Object.keys(b.refs)).toEqual(['tasks', 'projects'])
    expect(b.refs.tasks.value).toEqual([])
    b.goLive('org')
    const frames = b.frames()
    expect(frames[0]).toEqual({ type: 'sub', key: 'org' })
    const request = lastSnapshotRequest(frames)
    expect(request.models).toEqual([{ model: 'Task' }, { model: 'Project', include: ['tasks'] }])
    b.socket().receive({ type: 'snapshot', key: 'org', ref: request.ref, index: 1, rows: [{ id: 5, name: 'p', tasks: [{ id: 1, projectId: 5 }] }] })
    b.socket().receive({ type: 'snapshot', key: 'org', ref: request.ref, index: 0, rows: [task(1)] })
    await flush()
    expect(loaded).toBe(false)
    b.socket().receive({ type: 'snapshotted', key: 'org', ref: request.ref, cursor: '0/10', models: { Task: { id: ['id'] }, Project: { id: ['id'] } } })
    await flush()
    expect(loaded).toBe(true)
    expect(b.refs.tasks.value).toEqual([task(1)])
    // Live: a nested task moves in, and the plain list gets it too.
    b.send('org', '0/11', [ins({ ...task(2), projectId: 5 })])
    expect(b.refs.projects.value).toEqual([{ id: 5, name: 'p', tasks: [{ id: 1, projectId: 5 }, { ...task(2), projectId: 5 }] }])
    expect(b.refs.tasks.value.map(row => row.id)).toEqual([1, 2])
    b.scope.stop()
  })

  it('uses the server render\'s snapshot for its key: no request, subscribed from its cursor, covered batches skipped', async () => {
    const setup = fakeClient()
    const scope = effectScope()
    const result = scope.run(() => bindLiveSync(() => setup.client, 'org', { watch: { tasks: { model: 'Task' } } }, () => '0/5', { key: 'org', snapshot: { cursor: '0/10', models: {}, rows: [[task(1)]] } }))!
    expect(result.refs.tasks.value).toEqual([task(1)])
    setup.socket().open({ cursor: '0/10' })
    expect(setup.socket().take()).toEqual([{ type: 'sub', key: 'org', since: '0/10' }])
    setup.socket().receive({ type: 'tx', key: 'org', cursor: '0/10', changes: [ins(task(9))] })
    setup.socket().receive({ type: 'tx', key: 'org', cursor: '0/11', changes: [ins(task(2))] })
    setup.socket().receive({ type: 'subscribed', key: 'org', cursor: '0/11', replayed: 2 })
    await result
    expect(result.refs.tasks.value).toEqual([task(1), task(2)])
    scope.stop()
  })

  it('reads a new snapshot when the key changes, and drops the old key\'s rows', async () => {
    const orgKey = ref('a')
    const b = bind(orgKey, { watch: { tasks: { model: 'Task' } } })
    b.goLive('a')
    let request = lastSnapshotRequest(b.frames())
    b.socket().receive({ type: 'snapshot', key: 'a', ref: request.ref, index: 0, rows: [task(1)] })
    b.socket().receive({ type: 'snapshotted', key: 'a', ref: request.ref, cursor: '0/10', models: {} })
    await flush()
    orgKey.value = 'b'
    await nextTick()
    b.goLive('b')
    request = lastSnapshotRequest(b.frames())
    expect(request.key).toBe('b')
    b.socket().receive({ type: 'snapshot', key: 'b', ref: request.ref, index: 0, rows: [task(2)] })
    b.socket().receive({ type: 'snapshotted', key: 'b', ref: request.ref, cursor: '0/12', models: {} })
    await flush()
    expect(b.refs.tasks.value).toEqual([task(2)])
    b.scope.stop()
  })
})
