import type { Lsn } from './lsn'
import type { ModelMeta, Row } from './protocol'

/** A snapshot taken during a server render, handed to the browser in the page's payload. */
export interface ServerSnapshot {
  /** Every transaction up to here is in `rows`: the browser subscribes from here. */
  cursor: Lsn | null
  models: Record<string, ModelMeta>
  /** Rows per requested model, in the request's order. */
  rows: Row[][]
}
