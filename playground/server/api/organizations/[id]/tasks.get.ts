import type { TaskRow } from '#shared/types'

export default defineEventHandler(async (event): Promise<TaskRow[]> => {
  db()
  const tasks = await Task.findAll({ where: { organizationId: idParam(event) }, order: [['id', 'ASC']] })
  return tasks.map(task => task.toJSON() as TaskRow)
})
