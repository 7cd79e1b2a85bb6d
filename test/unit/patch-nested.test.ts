import { describe, expect, it } from 'vitest'
import { computed, reactive } from 'vue'
import { forgetListIndex } from '../../src/runtime/shared/patch'
import { patchRow, patchRows, type NestedInclude, type RowsSpec } from '../../src/runtime/shared/patch-nested'
import { replaceList, replaceObject } from '../../src/runtime/shared/replace-rows'
import type { Change, Row } from '../../src/runtime/shared/protocol'
import { del, ins, upd } from './helpers'

const idsOf = () => ['id']
const TASKS: NestedInclude = { name: 'tasks', model: 'Task', foreignKey: 'projectId', kind: 'hasMany' }
const PROJECT: NestedInclude = { name: 'project', model: 'Project', foreignKey: 'projectId', kind: 'belongsTo' }
const projectsSpec: RowsSpec = { model: 'Project', ids: ['id'], includes: [TASKS], idsOf }
const tasksSpec: RowsSpec = { model: 'Task', ids: ['id'], includes: [PROJECT], idsOf }

const byModel = (...changes: Change[]) => {
  const map = new Map<string, Change[]>()
  for (const change of changes) map.set(change.model, [...(map.get(change.model) ?? []), change])
  return map
}
const task = (id: number, projectId: number | null, title = `task ${id}`) => ({ id, projectId, title })
const project = (id: number, tasks: Row[] = [], name = `project ${id}`): Row => ({ id, name, tasks })
const taskIds = (row: Row | undefined) => (row?.tasks as Row[]).map(t => t.id)

describe('has-many nested rows (projects with their tasks)', () => {
  it('adds an inserted task to its parent\'s array and nowhere else', () => {
    const list = [project(1, [task(10, 1)]), project(2)]
    const ops = patchRows(list, byModel(ins(task(11, 2))), projectsSpec)
    expect(ops).toEqual([ins(task(11, 2))])
    expect(taskIds(list[0])).toEqual([10])
    expect(taskIds(list[1])).toEqual([11])
  })

  it('merges an update into the nested row in place', () => {
    const nested = task(10, 1)
    const list = [project(1, [nested])]
    patchRows(list, byModel(upd(task(10, 1, 'renamed'))), projectsSpec)
    expect((list[0]!.tasks as Row[])[0]).toBe(nested)
    expect(nested.title).toBe('renamed')
  })

  it('moves a task whose foreign key changed from the old parent to the new one, same object', () => {
    const nested = task(10, 1)
    const list = [project(1, [nested, task(12, 1)]), project(2, [task(11, 2)])]
    patchRows(list, byModel(upd(task(10, 2, 'moved'))), projectsSpec)
    expect(taskIds(list[0])).toEqual([12])
    expect(taskIds(list[1])).toEqual([11, 10])
    expect((list[1]!.tasks as Row[])[1]).toBe(nested)
    expect(nested).toEqual(task(10, 2, 'moved'))
    // And back, through the index (no scan).
    patchRows(list, byModel(upd(task(10, 1))), projectsSpec)
    expect(taskIds(list[0])).toEqual([12, 10])
    expect(taskIds(list[1])).toEqual([11])
  })

  it('removes a deleted task, and a task moved to a parent not on the page', () => {
    const list = [project(1, [task(10, 1), task(11, 1)])]
    patchRows(list, byModel(del(task(10, 1))), projectsSpec)
    expect(taskIds(list[0])).toEqual([11])
    patchRows(list, byModel(upd(task(11, 99))), projectsSpec)
    expect(taskIds(list[0])).toEqual([])
    expect(patchRows(list, byModel(ins(task(12, 99))), projectsSpec)).toBeNull()
  })

  it('gives a project inserted live an empty tasks array, filled by a task of the same transaction', () => {
    const list: Row[] = [project(1)]
    patchRows(list, byModel(ins({ id: 2, name: 'new' }, 'Project'), ins(task(20, 2))), projectsSpec)
    expect(list[1]).toEqual({ id: 2, name: 'new', tasks: [task(20, 2)] })
  })

  it('keeps the nested rows of a project when the project itself is updated', () => {
    const list = [project(1, [task(10, 1)])]
    const tasks = list[0]!.tasks
    patchRows(list, byModel(upd({ id: 1, name: 'renamed' }, 'Project')), projectsSpec)
    expect(list[0]).toEqual({ id: 1, name: 'renamed', tasks: [task(10, 1)] })
    expect(list[0]!.tasks).toBe(tasks)
  })

  it('forgets the tasks of a deleted project: a later update of one finds no parent', () => {
    const list = [project(1, [task(10, 1)]), project(2)]
    patchRows(list, byModel(del({ id: 1, name: 'project 1' }, 'Project')), projectsSpec)
    expect(list.map(p => p.id)).toEqual([2])
    patchRows(list, byModel(upd(task(10, 2))), projectsSpec)
    expect(taskIds(list[0])).toEqual([10])
  })

  it('ignores a replayed insert (idempotent)', () => {
    const list = [project(1, [task(10, 1)])]
    expect(patchRows(list, byModel(ins(task(10, 1))), projectsSpec)).toBeNull()
    expect(taskIds(list[0])).toEqual([10])
  })

  it('patches a reactive list so that what depends on nested rows updates', () => {
    const state = reactive({ projects: [project(1, [task(10, 1)]), project(2)] })
    const counts = computed(() => state.projects.map(p => (p.tasks as Row[]).length).join(','))
    expect(counts.value).toBe('1,0')
    patchRows(state.projects, byModel(upd(task(10, 2))), projectsSpec, state.projects)
    expect(counts.value).toBe('0,1')
    patchRows(state.projects, byModel(upd(task(10, 2, 'again'))), projectsSpec, state.projects)
    expect(((state.projects[1]!.tasks as Row[])[0]!).title).toBe('again')
    expect(counts.value).toBe('0,1')
  })

  it('rebuilds its index after the app replaced the list\'s contents', () => {
    const list = [project(1, [task(10, 1)])]
    patchRows(list, byModel(upd(task(10, 1, 'x'))), projectsSpec)
    list.splice(0, 1, project(1, [task(10, 1)]), project(3))
    forgetListIndex(list)
    patchRows(list, byModel(upd(task(10, 3))), projectsSpec)
    expect(taskIds(list[0])).toEqual([])
    expect(taskIds(list[1])).toEqual([10])
  })

  it('keeps a single project\'s tasks live (a single-row ref)', () => {
    const one = project(1, [task(10, 1)])
    let result = patchRow(one, byModel(ins(task(11, 1)), ins(task(12, 2))), projectsSpec)
    expect(result.value).toBe(one)
    expect(taskIds(one)).toEqual([10, 11])
    result = patchRow(one, byModel(upd(task(10, 2))), projectsSpec)
    expect(taskIds(one)).toEqual([11])
    expect(result.ops).toEqual([upd(task(10, 2))])
    expect(patchRow(one, byModel(del({ id: 1 }, 'Project')), projectsSpec).value).toBeNull()
  })
})

describe('belongs-to nested rows (tasks with their project)', () => {
  const withProject = (id: number, projectId: number | null, name = `project ${projectId}`): Row => ({ ...task(id, projectId), project: projectId === null ? null : { id: projectId, name } })

  it('merges a project update into every task holding it', () => {
    const list = [withProject(1, 5), withProject(2, 5), withProject(3, 6)]
    const held = list[0]!.project
    patchRows(list, byModel(upd({ id: 5, name: 'renamed' }, 'Project')), tasksSpec)
    expect(list.map(t => (t.project as Row).name)).toEqual(['renamed', 'renamed', 'project 6'])
    expect(list[0]!.project).toBe(held)
    expect(list[0]!.project).not.toBe(list[1]!.project)
  })

  it('sets it to null when the project is deleted', () => {
    const list = [withProject(1, 5), withProject(2, 6)]
    patchRows(list, byModel(del({ id: 5 }, 'Project')), tasksSpec)
    expect(list.map(t => t.project)).toEqual([null, { id: 6, name: 'project 6' }])
  })

  it('follows a task whose foreign key changed to a project known on the page, to null, or to not loaded', () => {
    const list = [withProject(1, 5), withProject(2, 6)]
    patchRows(list, byModel(upd(task(1, 6))), tasksSpec)
    expect(list[0]!.project).toEqual({ id: 6, name: 'project 6' })
    expect(list[0]!.project).not.toBe(list[1]!.project)
    patchRows(list, byModel(upd(task(1, null))), tasksSpec)
    expect(list[0]!.project).toBeNull()
    patchRows(list, byModel(upd(task(1, 7))), tasksSpec)
    expect(list[0]).not.toHaveProperty('project')
    // A project the page learns of later fills it.
    patchRows(list, byModel(ins({ id: 7, name: 'seven' }, 'Project')), tasksSpec)
    expect(list[0]!.project).toEqual({ id: 7, name: 'seven' })
    // And an update of project 6 no longer reaches task 1.
    patchRows(list, byModel(upd({ id: 6, name: 'six' }, 'Project')), tasksSpec)
    expect(list.map(t => (t.project as Row).name)).toEqual(['seven', 'six'])
  })

  it('gives a task inserted live the project the page knows', () => {
    const list = [withProject(1, 5)]
    patchRows(list, byModel(ins(task(2, 5)), ins(task(3, null))), tasksSpec)
    expect(list[1]).toEqual(withProject(2, 5))
    expect(list[2]).toEqual(withProject(3, null))
  })

  it('stops updating a deleted task\'s project', () => {
    const list = [withProject(1, 5), withProject(2, 5)]
    const gone = list[0]!
    patchRows(list, byModel(del(task(1, 5))), tasksSpec)
    patchRows(list, byModel(upd({ id: 5, name: 'later' }, 'Project')), tasksSpec)
    expect((gone.project as Row).name).toBe('project 5')
    expect((list[0]!.project as Row).name).toBe('later')
  })

  it('keeps a single task\'s project live', () => {
    const one = withProject(1, 5)
    patchRow(one, byModel(upd({ id: 5, name: 'x' }, 'Project')), tasksSpec)
    expect(one.project).toEqual({ id: 5, name: 'x' })
    patchRow(one, byModel(upd(task(1, null))), tasksSpec)
    expect(one.project).toBeNull()
  })
})

describe('replaceList', () => {
  const spec: RowsSpec = { model: 'Task', ids: ['id'], includes: [], idsOf }

  it('keeps the identity and place of rows still there, merges them, removes the gone and appends the new', () => {
    const a = task(1, null, 'a')
    const b = task(2, null, 'b')
    const c = task(3, null, 'c')
    const list: Row[] = [a, b, c]
    const ops = replaceList(list, [task(3, null, 'c'), task(4, null, 'd'), task(1, null, 'A')], spec)
    expect(list).toEqual([task(1, null, 'A'), task(3, null, 'c'), task(4, null, 'd')])
    expect(list[0]).toBe(a)
    expect(list[1]).toBe(c)
    expect(ops.map(op => [op.op, op.id])).toEqual([['insert', 4], ['update', 1], ['delete', 2]])
  })

  it('copies the snapshot rows it appends', () => {
    const rows = [task(1, null)]
    const list: Row[] = []
    replaceList(list, rows, spec)
    expect(list[0]).toEqual(rows[0])
    expect(list[0]).not.toBe(rows[0])
  })

  it('replaces nested rows in place inside kept parents', () => {
    const kept = task(10, 1)
    const list = [project(1, [kept, task(11, 1)]), project(2)]
    const ops = replaceList(list, [project(1, [task(10, 1, 'changed'), task(12, 1)]), project(3, [task(30, 3)])], projectsSpec)
    expect(list).toEqual([project(1, [task(10, 1, 'changed'), task(12, 1)]), project(3, [task(30, 3)])])
    expect((list[0]!.tasks as Row[])[0]).toBe(kept)
    expect(ops.map(op => [op.op, op.id])).toEqual([['update', 1], ['insert', 3], ['delete', 2]])
    // The nested index follows the replaced rows.
    patchRows(list, byModel(upd(task(12, 3))), projectsSpec)
    expect(taskIds(list[0])).toEqual([10])
    expect(taskIds(list[1])).toEqual([30, 12])
  })

  it('merges or nulls a single row', () => {
    const one = task(1, null, 'a')
    expect(replaceObject(one, [task(2, null), task(1, null, 'b')], spec)).toEqual({ value: one, ops: [upd(task(1, null, 'b'))] })
    expect(one.title).toBe('b')
    expect(replaceObject(one, [task(2, null)], spec).value).toBeNull()
  })
})
