import type { TaskRow } from '#shared/types'

export default defineEventHandler(async (event): Promise<TaskRow> => {
  db()
  const task = await Task.findByPk(idParam(event))
  if (!task) throw createError({ statusCode: 404, statusMessage: 'No such task' })
  return task.toJSON() as TaskRow
})
