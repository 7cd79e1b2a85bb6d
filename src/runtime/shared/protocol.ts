/**
 * The nuxt-live-sync wire protocol: JSON text frames over one WebSocket.
 * Framework-free on purpose: the Nitro route and the browser client both
 * import it, so the two sides cannot drift apart.
 *
 * Every server message about a key carries `cursor`, the commit LSN the key's
 * state is known up to. A client resumes by subscribing with `since: cursor`;
 * the server then replays what it still holds after that cursor, or answers
 * `resync` when it cannot.
 */
import { isLsn, type Lsn } from './lsn'

export const PROTOCOL_VERSION = 1

/** A subscription key as the app passes it (an organization id, a uuid, …). */
export type KeyValue = string | number | boolean

/** A row as the model's JSON (`JSON.parse(JSON.stringify(instance))`). */
export type Row = Record<string, unknown>

export type ChangeOp = 'insert' | 'update' | 'delete'

/** One row change of one model inside a committed transaction (`R`: the row's type). */
export interface Change<R = Row> {
  op: ChangeOp
  /** The Sequelize model name. */
  model: string
  /** The row's id: the id attribute's value, or an array of values for a composite id. */
  id: unknown
  /** The new row for insert/update, the old row for delete. */
  row: R
}

/** What the client needs to know of a watched model to patch lists. */
export interface ModelMeta {
  /** Attribute names that make up the row id. */
  id: string[]
}

export type ResyncReason
  /** The table was truncated: the rows the page holds may all be gone. */
  = | 'truncate'
  /** The replication stream was interrupted; changes may have been missed (a new epoch). */
    | 'gap'
  /**
   * `since` is older than anything the server still holds (or, answering a
   * `replay`, what it holds since then is more than it sends one socket at once).
   */
    | 'too-old'

/** One model a snapshot reads: the key's rows, with the named associations nested in each row. */
export interface SnapshotModel {
  /** The Sequelize model name. */
  model: string
  /**
   * Names of the model's Sequelize associations (`Project.hasMany(Task, { as: 'tasks' })`)
   * whose rows are nested in each row, as `findAll({ include })` nests them.
   */
  include?: string[]
}

export type ErrorCode
  = | 'bad-request'
    | 'unsupported-version'
    | 'forbidden'
    | 'unavailable'
    | 'too-many-keys'
    | 'internal'

// ── server → client ─────────────────────────────────────────────────────────

export interface HelloMessage {
  type: 'hello'
  v: typeof PROTOCOL_VERSION
  /** Changes whenever the server's replication stream restarts. */
  epoch: string
  /** The server's position: everything up to here has been dispatched. */
  cursor: Lsn | null
}

/**
 * A committed transaction's changes for one key. A large one is sent in
 * parts as it is read (so it is neither held whole by the server nor sent
 * late): `part` counts from 0, and the part with `last: true` carries the
 * commit's cursor. A client applies the transaction once, at its last part,
 * and never applies one whose first part it did not see. Earlier parts
 * carry a cursor just past the commit's start, which is no cursor to resume
 * from (only the last part's is).
 */
export interface TxMessage {
  type: 'tx'
  key: string
  cursor: Lsn
  changes: Change[]
  /** Set when this is a replay answering a `replay` request. */
  ref?: number
  /** The part's index, for a transaction sent in parts. */
  part?: number
  /** The last part of a transaction sent in parts. */
  last?: boolean
}

export interface SubscribedMessage {
  type: 'subscribed'
  key: string
  /** Every later `tx` for this key has a cursor after this one. */
  cursor: Lsn | null
  /** How many replayed `tx` frames preceded this message. */
  replayed: number
  /**
   * The watched models' id attributes, which the client needs to patch lists.
   * Sent only once a subscription is authorized (never in `hello`); the
   * server always sends it, a client tolerates its absence.
   */
  models?: Record<string, ModelMeta>
}

export interface ReplayedMessage {
  type: 'replayed'
  key: string
  ref: number
  cursor: Lsn | null
  replayed: number
}

export interface ResyncMessage {
  type: 'resync'
  key: string
  cursor: Lsn | null
  reason: ResyncReason
  /** Tables involved, for `truncate`. */
  tables?: string[]
  ref?: number
}

/**
 * One page of a snapshot's rows (answering a `snapshot` request): the key's
 * current rows of `models[index]`, shaped like live rows. Pages of one
 * model arrive in id order; a `snapshotted` frame ends the snapshot.
 */
export interface SnapshotMessage {
  type: 'snapshot'
  key: string
  ref: number
  /** Position of the model in the request's `models`. */
  index: number
  rows: Row[]
}

/** The end of a snapshot: every transaction up to `cursor` is in it, later ones arrive as `tx` frames. */
export interface SnapshottedMessage {
  type: 'snapshotted'
  key: string
  ref: number
  cursor: Lsn | null
  /** The id attributes of the snapshot's models (nested ones included). */
  models: Record<string, ModelMeta>
}

export interface UnsubscribedMessage {
  type: 'unsubscribed'
  key: string
}

export interface PongMessage {
  type: 'pong'
  cursor: Lsn | null
  t?: number
}

export interface ErrorMessage {
  type: 'error'
  code: ErrorCode
  message: string
  key?: string
  ref?: number
}

export type ServerMessage
  = | HelloMessage
    | TxMessage
    | SubscribedMessage
    | ReplayedMessage
    | ResyncMessage
    | SnapshotMessage
    | SnapshottedMessage
    | UnsubscribedMessage
    | PongMessage
    | ErrorMessage

// ── client → server ─────────────────────────────────────────────────────────

export interface SubMessage {
  type: 'sub'
  key: KeyValue
  /** Replay what happened after this cursor before going live. */
  since?: Lsn
}

export interface UnsubMessage {
  type: 'unsub'
  key: KeyValue
}

/** Ask for the changes of an already subscribed key after `since` (a second listener joining). */
export interface ReplayMessage {
  type: 'replay'
  key: KeyValue
  since: Lsn
  ref: number
}

/**
 * Ask for the current rows of a key this socket is subscribed to (so it is
 * authorized): answered by `snapshot` pages and a `snapshotted` frame, or an
 * `error` carrying `ref`.
 */
export interface SnapshotRequestMessage {
  type: 'snapshot'
  key: KeyValue
  models: SnapshotModel[]
  ref: number
}

export interface PingMessage {
  type: 'ping'
  t?: number
}

export type ClientMessage = SubMessage | UnsubMessage | ReplayMessage | SnapshotRequestMessage | PingMessage

/** Longest subscription key accepted, in characters. */
export const MAX_KEY_LENGTH = 256
/**
 * Longest client frame parsed, in characters: a longer one (up to the
 * server's `limits.maxFrameBytes`) gets an `error` frame.
 */
export const MAX_CLIENT_FRAME = 4096
/** Most models (and most associations per model) one snapshot request may name. */
export const MAX_SNAPSHOT_MODELS = 16
/** Longest model or association name accepted, in characters. */
export const MAX_NAME_LENGTH = 128
/** Deepest nesting of objects and arrays in a client frame (a message is a flat object). */
export const MAX_CLIENT_FRAME_DEPTH = 4

/**
 * Close codes of the live sync socket. The browser client reconnects after
 * each of them (with backoff) except `UNSUPPORTED_VERSION`, and resumes every
 * key from its cursor: the server replays what it missed, or sends `resync`
 * when its history no longer reaches back that far.
 */
export const CloseCode = {
  /** The page speaks another protocol version: reload it (no reconnect). */
  UNSUPPORTED_VERSION: 1002,
  /** Frames came faster than the server's token bucket allows, or too many waited for authorization. */
  POLICY_VIOLATION: 1008,
  /** A frame longer than the server's `limits.maxFrameBytes` (refused before it is buffered whole). */
  FRAME_TOO_LARGE: 1009,
  /** (Client side) a ping got no answer in time. */
  HEARTBEAT_TIMEOUT: 4000,
  /**
   * Slow consumer: more than `limits.maxBufferedBytes` waited unsent to this
   * socket. Reconnect and resume from the cursor.
   */
  SLOW_CONSUMER: 4008,
} as const

/** A protocol violation; the server answers it with an `error` frame. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message)
    this.name = 'ProtocolError'
  }
}

/**
 * The one string a key value is routed by. A row's `organizationId` of `5`
 * and a client's key `'5'` or `5` meet here.
 */
export function keyString(value: unknown): string | null {
  if (value === null || value === undefined) return null
  switch (typeof value) {
    case 'string':
      return value
    case 'number':
    case 'bigint':
    case 'boolean':
      return String(value)
  }
  if (value instanceof Date) return value.toISOString()
  return JSON.stringify(value)
}

/** The string a row id is indexed by (ids of composite keys are arrays). */
export function idKey(id: unknown): string {
  return Array.isArray(id) ? JSON.stringify(id) : (keyString(id) ?? '')
}

/** The id of a row, given the model's id attributes. */
export function rowId(row: Row, idAttributes: readonly string[]): unknown {
  if (idAttributes.length === 1) return row[idAttributes[0]!]
  return idAttributes.map(attribute => row[attribute])
}

function fail(message: string): never {
  throw new ProtocolError('bad-request', `[live-sync] ${message}`)
}

/** Keys that mean something to JavaScript objects: never accepted in a frame. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype'])

/** Refuses nesting deeper than `MAX_CLIENT_FRAME_DEPTH` and prototype-related keys, anywhere in the frame. */
function checkStructure(data: unknown): void {
  const stack: Array<[unknown, number]> = [[data, 1]]
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!
    if (typeof value !== 'object' || value === null) continue
    if (depth > MAX_CLIENT_FRAME_DEPTH) fail(`frame nested deeper than ${MAX_CLIENT_FRAME_DEPTH} levels`)
    for (const key of Object.keys(value)) {
      if (FORBIDDEN_KEYS.has(key)) fail(`frame has a ${JSON.stringify(key)} key`)
      stack.push([(value as Record<string, unknown>)[key], depth + 1])
    }
  }
}

function checkKey(key: unknown): KeyValue {
  if (typeof key === 'string') {
    if (key.length === 0 || key.length > MAX_KEY_LENGTH) fail(`"key" must be 1 to ${MAX_KEY_LENGTH} characters`)
    return key
  }
  if (typeof key === 'number' && Number.isFinite(key)) return key
  if (typeof key === 'boolean') return key
  return fail('"key" must be a string, a finite number or a boolean')
}

function checkRef(ref: unknown): number {
  if (typeof ref !== 'number' || !Number.isSafeInteger(ref)) fail('"ref" must be an integer')
  return ref
}

function checkName(name: unknown, what: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH) fail(`${what} must be a name of 1 to ${MAX_NAME_LENGTH} characters`)
  return name
}

function checkSnapshotModels(models: unknown): SnapshotModel[] {
  if (!Array.isArray(models) || models.length === 0 || models.length > MAX_SNAPSHOT_MODELS) fail(`"models" must be a list of 1 to ${MAX_SNAPSHOT_MODELS} models`)
  return models.map((entry: unknown) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail('each of "models" must be an object like { "model": "Task" }')
    const { model, include } = entry as Record<string, unknown>
    const checked: SnapshotModel = { model: checkName(model, '"model"') }
    if (include === undefined) return checked
    if (!Array.isArray(include) || include.length > MAX_SNAPSHOT_MODELS) fail(`"include" must be a list of at most ${MAX_SNAPSHOT_MODELS} association names`)
    checked.include = include.map(name => checkName(name, 'an "include" entry'))
    return checked
  })
}

function checkSince(since: unknown, required: boolean): Lsn | undefined {
  if (since === undefined || since === null) {
    if (required) fail('"since" is required')
    return undefined
  }
  if (!isLsn(since)) fail('"since" must be a cursor (an LSN such as "0/16B3F80")')
  return since
}

/**
 * Parses and validates one client frame. Throws a `ProtocolError` that says
 * what was wrong; never returns something half-valid.
 */
export function parseClientMessage(text: string): ClientMessage {
  if (text.length > MAX_CLIENT_FRAME) fail(`frame longer than ${MAX_CLIENT_FRAME} characters`)
  let data: unknown
  try {
    data = JSON.parse(text)
  }
  catch {
    fail('frame is not valid JSON')
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) fail('frame must be a JSON object')
  checkStructure(data)
  const message = data as Record<string, unknown>
  switch (message.type) {
    case 'sub':
      return { type: 'sub', key: checkKey(message.key), since: checkSince(message.since, false) }
    case 'unsub':
      return { type: 'unsub', key: checkKey(message.key) }
    case 'replay': {
      const ref = checkRef(message.ref)
      return { type: 'replay', key: checkKey(message.key), since: checkSince(message.since, true)!, ref }
    }
    case 'snapshot': {
      const ref = checkRef(message.ref)
      return { type: 'snapshot', key: checkKey(message.key), models: checkSnapshotModels(message.models), ref }
    }
    case 'ping':
      return typeof message.t === 'number' ? { type: 'ping', t: message.t } : { type: 'ping' }
    default:
      return fail(`unknown message type ${JSON.stringify(message.type)} (expected sub, unsub, replay, snapshot or ping)`)
  }
}
