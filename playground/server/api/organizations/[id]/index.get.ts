import type { OrganizationRow } from '#shared/types'

export default defineEventHandler(async (event): Promise<OrganizationRow> => {
  db()
  const organization = await Organization.findByPk(idParam(event))
  if (!organization) throw createError({ statusCode: 404, statusMessage: 'No such organization' })
  return organization.get({ plain: true }) as OrganizationRow
})
