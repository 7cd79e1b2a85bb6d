/**
 * A decoder for pgoutput (protocol version 1) messages that keeps column
 * values as the text Postgres sent. pg-logical-replication's own parser runs
 * every value through `pg`'s global type parsers into an object per row; we
 * need Sequelize's parsers instead (row shape = the model's JSON) and want
 * positional arrays on the hot path, so the replication plugin uses this.
 *
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 */

/**
 * A tuple as sent: one entry per column, `null` for SQL NULL and `undefined`
 * for an unchanged TOASTed value the update did not send.
 */
export type RawTuple = Array<string | null | undefined>

export interface RelationColumn {
  name: string
  typeOid: number
  typeMod: number
  /** Part of the replica identity key. */
  isKey: boolean
}

export interface RelationMessage {
  tag: 'relation'
  relationOid: number
  schema: string
  name: string
  replicaIdentity: 'default' | 'nothing' | 'full' | 'index'
  columns: RelationColumn[]
}

export interface BeginMessage { tag: 'begin', finalLsn: string, commitTime: number, xid: number }
export interface CommitMessage { tag: 'commit', commitLsn: string, commitEndLsn: string, commitTime: number }
export interface InsertMessage { tag: 'insert', relationOid: number, new: RawTuple }
export interface UpdateMessage {
  tag: 'update'
  relationOid: number
  /** The whole old row (REPLICA IDENTITY FULL) … */
  old: RawTuple | null
  /** … or only its key columns (when the key changed under DEFAULT/INDEX identity). */
  key: RawTuple | null
  new: RawTuple
}
export interface DeleteMessage { tag: 'delete', relationOid: number, old: RawTuple | null, key: RawTuple | null }
export interface TruncateMessage { tag: 'truncate', relationOids: number[], cascade: boolean, restartIdentity: boolean }
export interface TypeMessage { tag: 'type', typeOid: number, schema: string, name: string }
export interface OriginMessage { tag: 'origin', originLsn: string, originName: string }
export interface LogicalMessage { tag: 'message', transactional: boolean, messageLsn: string, prefix: string, content: Buffer }

export type PgoutputMessage
  = | BeginMessage
    | CommitMessage
    | RelationMessage
    | InsertMessage
    | UpdateMessage
    | DeleteMessage
    | TruncateMessage
    | TypeMessage
    | OriginMessage
    | LogicalMessage

// Microseconds between 1970-01-01 and 2000-01-01 (the Postgres epoch), in ms.
const PG_EPOCH_MS = 946_684_800_000

const REPLICA_IDENTITY: Record<number, RelationMessage['replicaIdentity']> = {
  0x64: 'default',
  0x6E: 'nothing',
  0x66: 'full',
  0x69: 'index',
}

/** Reads one message: the XLogData payload, which starts at `offset` of `buf` (after the 25-byte header). */
export function decodePgoutput(buf: Buffer, offset = 0): PgoutputMessage {
  return new Reader(buf, offset).message()
}

export function formatLsn(hi: number, lo: number): string {
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`
}

// Buffer#utf8Slice skips toString's argument checks; it is on every Node Buffer.
const utf8: (buf: Buffer, start: number, end: number) => string
  = typeof (Buffer.prototype as { utf8Slice?: unknown }).utf8Slice === 'function'
    ? (buf, start, end) => (buf as Buffer & { utf8Slice: (s: number, e: number) => string }).utf8Slice(start, end)
    : (buf, start, end) => buf.toString('utf8', start, end)

class Reader {
  constructor(private readonly buf: Buffer, private pos: number) {}

  message(): PgoutputMessage {
    const tag = this.u8()
    switch (tag) {
      case 0x42: /* B */ return { tag: 'begin', finalLsn: this.lsn(), commitTime: this.time(), xid: this.i32() }
      case 0x43: /* C */ {
        this.u8() // flags, unused
        return { tag: 'commit', commitLsn: this.lsn(), commitEndLsn: this.lsn(), commitTime: this.time() }
      }
      case 0x52: /* R */ return this.relation()
      case 0x49: /* I */ {
        const relationOid = this.u32()
        this.u8() // 'N'
        return { tag: 'insert', relationOid, new: this.tuple() }
      }
      case 0x55: /* U */ return this.update()
      case 0x44: /* D */ {
        const relationOid = this.u32()
        const kind = this.u8()
        const tuple = this.tuple()
        return kind === 0x4F
          ? { tag: 'delete', relationOid, old: tuple, key: null }
          : { tag: 'delete', relationOid, old: null, key: tuple }
      }
      case 0x54: /* T */ {
        const count = this.i32()
        const flags = this.u8()
        const relationOids: number[] = []
        for (let i = 0; i < count; i++) relationOids.push(this.u32())
        return { tag: 'truncate', relationOids, cascade: (flags & 1) !== 0, restartIdentity: (flags & 2) !== 0 }
      }
      case 0x59: /* Y */ return { tag: 'type', typeOid: this.u32(), schema: this.cstring(), name: this.cstring() }
      case 0x4F: /* O */ return { tag: 'origin', originLsn: this.lsn(), originName: this.cstring() }
      case 0x4D: /* M */ {
        const flags = this.u8()
        const messageLsn = this.lsn()
        const prefix = this.cstring()
        const length = this.i32()
        const content = this.buf.subarray(this.pos, this.pos + length)
        this.pos += length
        return { tag: 'message', transactional: (flags & 1) !== 0, messageLsn, prefix, content }
      }
      default:
        throw new Error(`[live-sync] unknown pgoutput message '${String.fromCharCode(tag)}' (0x${tag.toString(16)})`)
    }
  }

  private relation(): RelationMessage {
    const relationOid = this.u32()
    const schema = this.cstring()
    const name = this.cstring()
    const identity = this.u8()
    const replicaIdentity = REPLICA_IDENTITY[identity]
    if (!replicaIdentity) throw new Error(`[live-sync] unknown replica identity '${String.fromCharCode(identity)}'`)
    const count = this.i16()
    const columns: RelationColumn[] = []
    for (let i = 0; i < count; i++) {
      const flags = this.u8()
      columns.push({ name: this.cstring(), typeOid: this.u32(), typeMod: this.i32(), isKey: (flags & 1) !== 0 })
    }
    return { tag: 'relation', relationOid, schema, name, replicaIdentity, columns }
  }

  private update(): UpdateMessage {
    const relationOid = this.u32()
    let kind = this.u8()
    let old: RawTuple | null = null
    let key: RawTuple | null = null
    if (kind === 0x4F /* O */) {
      old = this.tuple()
      kind = this.u8()
    }
    else if (kind === 0x4B /* K */) {
      key = this.tuple()
      kind = this.u8()
    }
    if (kind !== 0x4E /* N */) throw new Error(`[live-sync] malformed pgoutput update (sub-message '${String.fromCharCode(kind)}')`)
    return { tag: 'update', relationOid, old, key, new: this.tuple() }
  }

  private tuple(): RawTuple {
    const buf = this.buf
    const count = buf.readInt16BE(this.pos)
    let pos = this.pos + 2
    // eslint-disable-next-line unicorn/no-new-array -- preallocated: the tuple's length is known
    const values: RawTuple = new Array(count)
    for (let i = 0; i < count; i++) {
      const kind = buf[pos++]
      if (kind === 0x74 /* t */) {
        const length = (buf[pos]! << 24) | (buf[pos + 1]! << 16) | (buf[pos + 2]! << 8) | buf[pos + 3]!
        const start = pos + 4
        pos = start + length
        values[i] = utf8(buf, start, pos)
      }
      else if (kind === 0x6E /* n */) values[i] = null
      else if (kind === 0x75 /* u */) values[i] = undefined
      else throw new Error(`[live-sync] unsupported pgoutput column kind '${String.fromCharCode(kind ?? 0)}' (binary mode is not used)`)
    }
    this.pos = pos
    return values
  }

  private u8(): number {
    return this.buf[this.pos++]!
  }

  private i16(): number {
    const value = this.buf.readInt16BE(this.pos)
    this.pos += 2
    return value
  }

  private i32(): number {
    const value = this.buf.readInt32BE(this.pos)
    this.pos += 4
    return value
  }

  private u32(): number {
    const value = this.buf.readUInt32BE(this.pos)
    this.pos += 4
    return value
  }

  private lsn(): string {
    const hi = this.u32()
    const lo = this.u32()
    return formatLsn(hi, lo)
  }

  private time(): number {
    const micros = this.buf.readBigInt64BE(this.pos)
    this.pos += 8
    return Number(micros) / 1000 + PG_EPOCH_MS
  }

  private cstring(): string {
    const end = this.buf.indexOf(0, this.pos)
    const value = this.buf.toString('utf8', this.pos, end)
    this.pos = end + 1
    return value
  }
}
