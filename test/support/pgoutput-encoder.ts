/**
 * Builds pgoutput (protocol 1) messages byte by byte, following
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html,
 * so the decoder can be tested on every message shape without a server.
 */
type Value = string | null | undefined

class Writer {
  private readonly parts: Buffer[] = []
  /** Appends `size` bytes written by `write` (a Buffer writer method). */
  private fixed<T>(size: number, write: (buffer: Buffer, value: T) => unknown, value: T) {
    const b = Buffer.alloc(size)
    write(b, value)
    this.parts.push(b)
    return this
  }

  u8(value: number) {
    return this.fixed(1, (b, v: number) => b.writeUInt8(v), value)
  }

  i16(value: number) {
    return this.fixed(2, (b, v: number) => b.writeInt16BE(v), value)
  }

  i32(value: number) {
    return this.fixed(4, (b, v: number) => b.writeInt32BE(v), value)
  }

  u32(value: number) {
    return this.fixed(4, (b, v: number) => b.writeUInt32BE(v), value)
  }

  i64(value: bigint) {
    return this.fixed(8, (b, v: bigint) => b.writeBigInt64BE(v), value)
  }

  lsn(hi: number, lo: number) {
    return this.u32(hi).u32(lo)
  }

  cstring(value: string) {
    this.parts.push(Buffer.from(value, 'utf8'), Buffer.from([0]))
    return this
  }

  tuple(values: Value[]) {
    this.i16(values.length)
    for (const value of values) {
      if (value === null) this.u8(0x6E)
      else if (value === undefined) this.u8(0x75)
      else {
        const bytes = Buffer.from(value, 'utf8')
        this.u8(0x74).i32(bytes.length)
        this.parts.push(bytes)
      }
    }
    return this
  }

  done(): Buffer {
    return Buffer.concat(this.parts)
  }
}

const ch = (c: string) => c.charCodeAt(0)
// 2000-01-01 in microseconds since 1970: pgoutput times count from there.
const PG_EPOCH_US = 946_684_800_000_000n

export const encode = {
  begin: (lsn: [number, number], timeMs: number, xid: number) =>
    new Writer().u8(ch('B')).lsn(...lsn).i64(BigInt(timeMs) * 1000n - PG_EPOCH_US).i32(xid).done(),
  commit: (lsn: [number, number], end: [number, number], timeMs: number) =>
    new Writer().u8(ch('C')).u8(0).lsn(...lsn).lsn(...end).i64(BigInt(timeMs) * 1000n - PG_EPOCH_US).done(),
  relation: (oid: number, schema: string, name: string, identity: string, columns: Array<{ name: string, typeOid: number, key?: boolean }>) => {
    const w = new Writer().u8(ch('R')).u32(oid).cstring(schema).cstring(name).u8(ch(identity)).i16(columns.length)
    for (const column of columns) w.u8(column.key ? 1 : 0).cstring(column.name).u32(column.typeOid).i32(-1)
    return w.done()
  },
  insert: (oid: number, values: Value[]) => new Writer().u8(ch('I')).u32(oid).u8(ch('N')).tuple(values).done(),
  update: (oid: number, values: Value[], before?: { kind: 'O' | 'K', values: Value[] }) => {
    const w = new Writer().u8(ch('U')).u32(oid)
    if (before) w.u8(ch(before.kind)).tuple(before.values)
    return w.u8(ch('N')).tuple(values).done()
  },
  delete: (oid: number, kind: 'O' | 'K', values: Value[]) => new Writer().u8(ch('D')).u32(oid).u8(ch(kind)).tuple(values).done(),
  truncate: (oids: number[], flags: number) => {
    const w = new Writer().u8(ch('T')).i32(oids.length).u8(flags)
    for (const oid of oids) w.u32(oid)
    return w.done()
  },
  type: (oid: number, schema: string, name: string) => new Writer().u8(ch('Y')).u32(oid).cstring(schema).cstring(name).done(),
  origin: (lsn: [number, number], name: string) => new Writer().u8(ch('O')).lsn(...lsn).cstring(name).done(),
}
