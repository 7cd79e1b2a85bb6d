export default defineEventHandler(async (event) => {
  db()
  const deleted = await Task.destroy({ where: { id: idParam(event) } })
  if (!deleted) throw createError({ statusCode: 404, statusMessage: 'No such task' })
  setResponseStatus(event, 204)
  return null
})
