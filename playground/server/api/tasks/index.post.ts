import type { TaskRow } from '#shared/types'

export default defineEventHandler(async (event): Promise<TaskRow> => {
  db()
  const input = await readTaskInput(event, 'create')
  const task = await Task.create(input)
  setResponseStatus(event, 201)
  return task.toJSON() as TaskRow
})
