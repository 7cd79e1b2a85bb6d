import { literal } from 'sequelize'
import type { OrganizationSummary } from '#shared/types'

export default defineEventHandler(async (): Promise<OrganizationSummary[]> => {
  db()
  const rows = await Organization.findAll({
    attributes: {
      include: [
        [literal('(SELECT count(*) FROM tasks t WHERE t.organization_id = "Organization"."id" AND NOT t.done)::int'), 'openTasks'],
        [literal('(SELECT count(*) FROM tasks t WHERE t.organization_id = "Organization"."id")::int'), 'totalTasks'],
      ],
    },
    order: [['name', 'ASC']],
  })
  return rows.map(row => row.get({ plain: true }) as OrganizationSummary)
})
