// Rows as the API returns them and as live sync delivers them
// (`JSON.parse(JSON.stringify(instance))` of the Sequelize models).

export const PRIORITIES = ['low', 'normal', 'high'] as const
export type Priority = typeof PRIORITIES[number]

export interface OrganizationRow {
  id: number
  name: string
}

export interface OrganizationSummary extends OrganizationRow {
  openTasks: number
  totalTasks: number
}

export interface TaskRow {
  id: number
  organizationId: number
  title: string
  done: boolean
  notes: string | null
  priority: Priority
  /** YYYY-MM-DD */
  dueOn: string | null
  createdAt: string
  updatedAt: string
}

/** What the create/update routes accept. */
export type TaskInput = Partial<Pick<TaskRow, 'organizationId' | 'title' | 'done' | 'notes' | 'priority' | 'dueOn'>>
