/** Small builders shared by the unit tests. */
import type { Change, Row, TxMessage } from '../../src/runtime/shared/protocol'

export const ins = (row: Row, model = 'Task'): Change => ({ op: 'insert', model, id: row.id, row })
export const upd = (row: Row, model = 'Task'): Change => ({ op: 'update', model, id: row.id, row })
export const del = (row: Row, model = 'Task'): Change => ({ op: 'delete', model, id: row.id, row })

/** A change of a model with a composite id made of `attributes`. */
export function compositeChange(op: Change['op'], row: Row, attributes: string[], model = 'Membership'): Change {
  return { op, model, id: attributes.map(attribute => row[attribute]), row }
}

export const tx = (key: string, cursor: string, changes: Change[] = [], ref?: number): TxMessage =>
  ref === undefined ? { type: 'tx', key, cursor, changes } : { type: 'tx', key, cursor, changes, ref }

export { prng } from '../support/prng'
