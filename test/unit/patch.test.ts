import { describe, expect, it } from 'vitest'
import { computed, reactive, watch, nextTick } from 'vue'
import { changesForRow, forgetListIndex, patchList, patchObject } from '../../src/runtime/shared/patch'
import type { Change, Row } from '../../src/runtime/shared/protocol'
import { compositeChange, del, ins, prng, upd } from './helpers'

const ID = ['id']
const ids = (list: Row[]) => list.map(row => row.id)

describe('patchList', () => {
  it('appends an inserted row', () => {
    const list: Row[] = [{ id: 1, title: 'a' }]
    expect(patchList(list, [ins({ id: 2, title: 'b' })], ID)).toBe(true)
    expect(list).toEqual([{ id: 1, title: 'a' }, { id: 2, title: 'b' }])
  })

  it('merges an update into the existing object, keeping its identity and position', () => {
    const first = { id: 1, title: 'a', done: false }
    const second = { id: 2, title: 'b', done: false }
    const list: Row[] = [first, second]
    expect(patchList(list, [upd({ id: 1, title: 'A', done: true })], ID)).toBe(true)
    expect(list[0]).toBe(first)
    expect(list[1]).toBe(second)
    expect(first).toEqual({ id: 1, title: 'A', done: true })
  })

  it('keeps attributes of the row the update does not carry (the app may have added some)', () => {
    const row: Row = { id: 1, title: 'a', selected: true }
    const list: Row[] = [row]
    patchList(list, [upd({ id: 1, title: 'b' })], ID)
    expect(list[0]).toEqual({ id: 1, title: 'b', selected: true })
  })

  it('appends the row of an update it does not hold (the row moved into the list)', () => {
    const list: Row[] = [{ id: 1 }]
    expect(patchList(list, [upd({ id: 9, title: 'moved in' })], ID)).toBe(true)
    expect(list).toEqual([{ id: 1 }, { id: 9, title: 'moved in' }])
  })

  it('removes a deleted row', () => {
    const list: Row[] = [{ id: 1 }, { id: 2 }, { id: 3 }]
    expect(patchList(list, [del({ id: 2 })], ID)).toBe(true)
    expect(ids(list)).toEqual([1, 3])
  })

  it('removes several rows deleted in one batch and keeps the others in order', () => {
    const rows = [1, 2, 3, 4, 5, 6].map(id => ({ id }))
    const list: Row[] = [...rows]
    patchList(list, [del({ id: 5 }), del({ id: 1 }), del({ id: 3 })], ID)
    expect(list).toEqual([rows[1], rows[3], rows[5]])
    expect(list[0]).toBe(rows[1])
  })

  it('ignores the delete of a row it does not hold and reports no change', () => {
    const list: Row[] = [{ id: 1 }]
    expect(patchList(list, [del({ id: 2 })], ID)).toBe(false)
    expect(list).toEqual([{ id: 1 }])
  })

  it('keeps identity and position of a row deleted and inserted again in one batch', () => {
    const rows = [{ id: 1, v: 0 }, { id: 2, v: 0 }, { id: 3, v: 0 }]
    const list: Row[] = [...rows]
    patchList(list, [del({ id: 2, v: 0 }), ins({ id: 2, v: 1 })], ID)
    expect(list).toEqual([{ id: 1, v: 0 }, { id: 2, v: 1 }, { id: 3, v: 0 }])
    expect(list[1]).toBe(rows[1])
  })

  it('removes a row inserted and deleted in one batch', () => {
    const list: Row[] = [{ id: 1 }]
    patchList(list, [ins({ id: 2 }), upd({ id: 2, v: 1 }), del({ id: 2 })], ID)
    expect(list).toEqual([{ id: 1 }])
  })

  it('is idempotent: applying a batch twice gives the list applying it once gives', () => {
    const batch: Change[] = [
      ins({ id: 4, v: 'new' }),
      upd({ id: 1, v: 'changed' }),
      del({ id: 2 }),
      upd({ id: 7, v: 'moved in' }),
      del({ id: 3 }),
      ins({ id: 3, v: 'back' }),
      ins({ id: 8 }),
      del({ id: 8 }),
    ]
    const make = (): Row[] => [{ id: 1, v: 'a' }, { id: 2, v: 'b' }, { id: 3, v: 'c' }]
    const once = make()
    patchList(once, batch, ID)
    const twice = make()
    patchList(twice, batch, ID)
    const identities = [...twice]
    patchList(twice, batch, ID)
    expect(twice).toEqual(once)
    expect(twice).toEqual(identities)
    twice.forEach((row, i) => expect(row).toBe(identities[i]))
  })

  it('reports no change when a replayed batch changes nothing', () => {
    const list: Row[] = [{ id: 1, v: 'a' }]
    const batch = [upd({ id: 1, v: 'b' }), ins({ id: 2, v: 'c' })]
    expect(patchList(list, batch, ID)).toBe(true)
    expect(patchList(list, batch, ID)).toBe(false)
  })

  it('does not share row objects between two lists fed the same change', () => {
    // One tx frame is handed to every subscriber of a key.
    const batch = [ins({ id: 1, v: 'a' })]
    const sidebar: Row[] = []
    const main: Row[] = []
    patchList(sidebar, batch, ID)
    patchList(main, batch, ID)
    expect(sidebar[0]).not.toBe(main[0])
    sidebar[0]!.selected = true
    expect(main[0]).toEqual({ id: 1, v: 'a' })
    expect(batch[0]!.row).toEqual({ id: 1, v: 'a' })
  })

  it('finds rows by id whether the id arrives as a number or a string', () => {
    const row = { id: 5, v: 'a' }
    const list: Row[] = [row]
    patchList(list, [{ op: 'update', model: 'Task', id: '5', row: { id: 5, v: 'b' } }], ID)
    expect(list).toEqual([{ id: 5, v: 'b' }])
    expect(list[0]).toBe(row)
  })

  describe('when the app changed the list itself', () => {
    it('sees a row the app pushed', () => {
      const list: Row[] = [{ id: 1 }]
      patchList(list, [upd({ id: 1, v: 1 })], ID)
      const pushed = { id: 2, v: 0 }
      list.push(pushed)
      patchList(list, [upd({ id: 2, v: 1 })], ID)
      expect(list).toEqual([{ id: 1, v: 1 }, { id: 2, v: 1 }])
      expect(list[1]).toBe(pushed)
    })

    it('forgets a row the app spliced out', () => {
      const list: Row[] = [{ id: 1 }, { id: 2 }]
      patchList(list, [upd({ id: 1, v: 1 })], ID)
      list.splice(0, 1)
      patchList(list, [upd({ id: 1, v: 2 })], ID)
      expect(list).toEqual([{ id: 2 }, { id: 1, v: 2 }])
    })

    it('notices a splice and a push that leave the length unchanged', () => {
      const list: Row[] = [{ id: 1 }, { id: 2 }]
      patchList(list, [upd({ id: 1, v: 1 })], ID)
      list.splice(0, 1)
      const pushed = { id: 3, v: 0 }
      list.push(pushed)
      patchList(list, [upd({ id: 3, v: 1 }), upd({ id: 1, v: 2 })], ID)
      expect(list).toEqual([{ id: 2 }, { id: 3, v: 1 }, { id: 1, v: 2 }])
      expect(list[1]).toBe(pushed)
    })

    it('notices contents replaced wholesale with the same length', () => {
      const list: Row[] = [{ id: 1, v: 0 }, { id: 2, v: 0 }]
      patchList(list, [upd({ id: 1, v: 1 })], ID)
      const fresh = [{ id: 1, v: 5 }, { id: 2, v: 5 }]
      list.splice(0, list.length, ...fresh)
      patchList(list, [upd({ id: 2, v: 6 })], ID)
      expect(list).toEqual([{ id: 1, v: 5 }, { id: 2, v: 6 }])
      expect(list[1]).toBe(fresh[1])
    })

    it('rebuilds the index after forgetListIndex', () => {
      const list: Row[] = [{ id: 1, v: 0 }, { id: 2, v: 0 }, { id: 3, v: 0 }]
      patchList(list, [upd({ id: 1, v: 1 })], ID)
      const replacement = { id: 2, v: 9 }
      list[1] = replacement // same length, same first and last row
      forgetListIndex(list)
      patchList(list, [upd({ id: 2, v: 10 })], ID)
      expect(list[1]).toBe(replacement)
      expect(list).toHaveLength(3)
      expect(replacement.v).toBe(10)
    })
  })

  it('indexes rows by composite ids', () => {
    const attributes = ['userId', 'orgId']
    const a = { userId: 1, orgId: 1, role: 'member' }
    const b = { userId: 1, orgId: 2, role: 'member' }
    const list: Row[] = [a, b]
    patchList(list, [
      compositeChange('update', { userId: 1, orgId: 2, role: 'admin' }, attributes),
      compositeChange('insert', { userId: 2, orgId: 1, role: 'owner' }, attributes),
      compositeChange('delete', { userId: 1, orgId: 1, role: 'member' }, attributes),
    ], attributes)
    expect(list).toEqual([{ userId: 1, orgId: 2, role: 'admin' }, { userId: 2, orgId: 1, role: 'owner' }])
    expect(list[0]).toBe(b)
  })

  describe('on a Vue reactive list', () => {
    it('triggers a computed and a watcher, and keeps the proxied rows', async () => {
      const list = reactive<Row[]>([{ id: 1, title: 'a' }, { id: 2, title: 'b' }])
      const titles = computed(() => list.map(row => row.title).join(','))
      const firstRow = list[0]
      expect(titles.value).toBe('a,b')
      const seen: string[] = []
      watch(titles, value => seen.push(value))

      patchList(list, [upd({ id: 1, title: 'A' })], ID)
      expect(titles.value).toBe('A,b')
      await nextTick()
      patchList(list, [ins({ id: 3, title: 'c' }), del({ id: 2 })], ID)
      expect(titles.value).toBe('A,c')
      await nextTick()
      patchList(list, [del({ id: 3 })], ID)
      await nextTick()

      expect(seen).toEqual(['A,b', 'A,c', 'A'])
      expect(list[0]).toBe(firstRow)
    })

    it('triggers a watcher on one row attribute (fine-grained)', async () => {
      const list = reactive<Row[]>([{ id: 1, done: false }])
      let calls = 0
      watch(() => list[0]!.done, () => calls++)
      patchList(list, [upd({ id: 1, done: true })], ID)
      await nextTick()
      expect(calls).toBe(1)
    })

    it('removes several rows of one batch from a reactive list', () => {
      const list = reactive<Row[]>([1, 2, 3, 4].map(id => ({ id })))
      const count = computed(() => list.length)
      expect(count.value).toBe(4)
      patchList(list, [del({ id: 1 }), del({ id: 3 })], ID)
      expect(count.value).toBe(2)
      expect(ids(list)).toEqual([2, 4])
    })

    it('shares one index between the proxy and its raw array', () => {
      const raw: Row[] = [{ id: 1 }]
      const list = reactive(raw)
      patchList(list, [upd({ id: 1, v: 1 })], ID, raw)
      patchList(list, [upd({ id: 1, v: 2 })], ID, raw)
      expect(raw).toEqual([{ id: 1, v: 2 }])
    })
  })
})

describe('patchObject', () => {
  it('merges an update of the same id into the object', () => {
    const current = { id: 1, title: 'a' }
    const result = patchObject(current, [upd({ id: 1, title: 'b' })], ID)
    expect(result).toEqual({ value: current, changed: true })
    expect(current.title).toBe('b')
  })

  it('ignores changes of other ids', () => {
    const current = { id: 1, title: 'a' }
    const result = patchObject(current, [upd({ id: 2, title: 'b' }), del({ id: 3 })], ID)
    expect(result).toEqual({ value: current, changed: false })
    expect(current).toEqual({ id: 1, title: 'a' })
  })

  it('gives null when the row is deleted', () => {
    expect(patchObject({ id: 1 }, [del({ id: 1 })], ID)).toEqual({ value: null, changed: true })
  })

  it('keeps the row, merged and with its identity, when it is deleted and inserted again in one batch', () => {
    const current = { id: 1, v: 0 }
    const result = patchObject(current, [del({ id: 1, v: 0 }), ins({ id: 1, v: 1 })], ID)
    expect(result.value).toBe(current)
    expect(current.v).toBe(1)
    expect(result.changed).toBe(true)
  })

  it('reports no change for an update that changes nothing', () => {
    const current = { id: 1, v: 0 }
    expect(patchObject(current, [upd({ id: 1, v: 0 })], ID)).toEqual({ value: current, changed: false })
  })

  it('leaves null and non-objects alone', () => {
    expect(patchObject(null, [ins({ id: 1 })], ID)).toEqual({ value: null, changed: false })
    expect(patchObject(undefined, [ins({ id: 1 })], ID)).toEqual({ value: undefined, changed: false })
  })

  it('matches composite ids', () => {
    const attributes = ['a', 'b']
    const current = { a: 1, b: 2, v: 0 }
    patchObject(current, [compositeChange('update', { a: 2, b: 1, v: 5 }, attributes), compositeChange('update', { a: 1, b: 2, v: 7 }, attributes)], attributes)
    expect(current.v).toBe(7)
  })
})

describe('changesForRow', () => {
  it('keeps only the changes of the row', () => {
    const changes = [upd({ id: 1, v: 1 }), upd({ id: 2, v: 1 }), del({ id: 1 })]
    expect(changesForRow(changes, { id: 1 }, ID)).toEqual([changes[0], changes[2]])
    expect(changesForRow(changes, null, ID)).toEqual([])
  })
})

describe('patchList against a reference model (randomized)', () => {
  type Model = Map<number, Row>

  /** The reference: a Map from id to row, applied one change at a time. */
  function applyToModel(model: Model, change: Change): void {
    const id = change.id as number
    if (change.op === 'delete') model.delete(id)
    else model.set(id, { ...model.get(id), ...change.row })
  }

  /** A batch of 1–8 changes that a database could plausibly produce, with a few odd ones. */
  function randomBatch(random: () => number, model: Model, version: { n: number }): Change[] {
    const size = 1 + Math.floor(random() * 8)
    const shadow = new Map(model)
    const batch: Change[] = []
    for (let i = 0; i < size; i++) {
      const id = Math.floor(random() * 50)
      const row = { id, title: `t${Math.floor(random() * 5)}`, version: ++version.n }
      const roll = random()
      let change: Change
      if (!shadow.has(id)) change = roll < 0.8 ? ins(row) : roll < 0.9 ? upd(row) : del(row) // update: moved in; delete: a no-op
      else change = roll < 0.55 ? upd(row) : roll < 0.95 ? del(shadow.get(id)!) : ins(row) // insert of a held row: a replay
      applyToModel(shadow, change)
      batch.push(change)
    }
    return batch
  }

  const byId = (rows: Iterable<Row>) => [...rows].map(row => ({ ...row })).sort((a, b) => (a.id as number) - (b.id as number))

  for (const seed of [1, 2, 3, 42, 1234]) {
    it(`matches the model over 300 random batches (seed ${seed})`, () => {
      const random = prng(seed)
      const model: Model = new Map()
      const list: Row[] = []
      const version = { n: 0 }
      for (let step = 0; step < 300; step++) {
        const batch = randomBatch(random, model, version)
        const before = new Map(list.map(row => [row.id as number, row]))
        const order = list.map(row => row.id)

        patchList(list, batch, ID)
        if (random() < 0.1) patchList(list, batch, ID) // a replay of the same batch
        for (const change of batch) applyToModel(model, change)

        expect(byId(list)).toEqual(byId(model.values()))
        expect(new Set(ids(list)).size).toBe(list.length)
        for (const row of list) {
          // Every row that was held before the batch and still is, is the same object.
          if (before.has(row.id as number)) expect(row).toBe(before.get(row.id as number))
        }
        // Rows held before keep their relative order; new rows come after them.
        const survivors = ids(list).filter(id => before.has(id as number))
        expect(survivors).toEqual(order.filter(id => model.has(id as number)))
        expect(ids(list).slice(0, survivors.length)).toEqual(survivors)
      }
    })
  }
})
