import type { TaskRow } from '#shared/types'

/** Updates any task fields, including `organizationId` (moves the task to another organization). */
export default defineEventHandler(async (event): Promise<TaskRow> => {
  db()
  const task = await Task.findByPk(idParam(event))
  if (!task) throw createError({ statusCode: 404, statusMessage: 'No such task' })
  await task.update(await readTaskInput(event, 'update'))
  return task.toJSON() as TaskRow
})
