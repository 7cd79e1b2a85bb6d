import type { H3Event } from 'h3'
import { PRIORITIES, type TaskInput } from '#shared/types'

/** A positive integer route parameter, or a 400. */
export function idParam(event: H3Event, name = 'id'): number {
  const id = Number(getRouterParam(event, name))
  if (!Number.isSafeInteger(id) || id <= 0) throw createError({ statusCode: 400, statusMessage: `Invalid ${name}` })
  return id
}

const bad = (message: string) => createError({ statusCode: 400, statusMessage: message })

/** The task fields of a request body, checked; `create` requires a title and an organization. */
export async function readTaskInput(event: H3Event, mode: 'create' | 'update'): Promise<TaskInput> {
  const body = await readBody<Record<string, unknown> | null>(event)
  if (!body || typeof body !== 'object') throw bad('Expected a JSON object')
  const input: TaskInput = {}
  if (body.title !== undefined) {
    if (typeof body.title !== 'string' || !body.title.trim()) throw bad('title must be a non-empty string')
    input.title = body.title.trim()
  }
  if (body.organizationId !== undefined) {
    if (!Number.isSafeInteger(body.organizationId) || (body.organizationId as number) <= 0) throw bad('organizationId must be a positive integer')
    input.organizationId = body.organizationId as number
  }
  if (body.done !== undefined) {
    if (typeof body.done !== 'boolean') throw bad('done must be a boolean')
    input.done = body.done
  }
  if (body.priority !== undefined) {
    if (!PRIORITIES.includes(body.priority as never)) throw bad(`priority must be one of ${PRIORITIES.join(', ')}`)
    input.priority = body.priority as TaskInput['priority']
  }
  if (body.notes !== undefined) {
    if (body.notes !== null && typeof body.notes !== 'string') throw bad('notes must be a string or null')
    input.notes = body.notes?.trim() || null
  }
  if (body.dueOn !== undefined) {
    if (body.dueOn !== null && (typeof body.dueOn !== 'string' || !/^\d{4}-\d\d-\d\d$/.test(body.dueOn))) throw bad('dueOn must be YYYY-MM-DD or null')
    input.dueOn = body.dueOn || null
  }
  if (mode === 'create' && (!input.title || !input.organizationId)) throw bad('title and organizationId are required')
  if (input.organizationId !== undefined && !(await Organization.findByPk(input.organizationId))) throw bad(`Organization ${input.organizationId} does not exist`)
  return input
}
