import { describe, expect, it } from 'vitest'
import { decodePgoutput } from '../../src/runtime/server/engine/pgoutput-decoder'
import { encode } from '../support/pgoutput-encoder'

describe('pgoutput decoder', () => {
  it('decodes begin and commit with LSNs in canonical spelling and times in ms', () => {
    const time = Date.UTC(2026, 10, 25, 12, 0, 0, 123)
    expect(decodePgoutput(encode.begin([0, 0x152BF60], time, 731))).toEqual({ tag: 'begin', finalLsn: '0/152BF60', commitTime: time, xid: 731 })
    expect(decodePgoutput(encode.commit([1, 0xA], [1, 0xFFFFFFFF], time))).toEqual({ tag: 'commit', commitLsn: '1/A', commitEndLsn: '1/FFFFFFFF', commitTime: time })
  })

  it('decodes a relation with its columns, key flags and replica identity', () => {
    const message = decodePgoutput(encode.relation(3_000_000_000, 'app', 'tâches', 'f', [
      { name: 'id', typeOid: 23, key: true },
      { name: 'title', typeOid: 25 },
    ]))
    expect(message).toEqual({
      tag: 'relation',
      relationOid: 3_000_000_000, // above 2^31: read unsigned
      schema: 'app',
      name: 'tâches',
      replicaIdentity: 'full',
      columns: [
        { name: 'id', typeOid: 23, typeMod: -1, isKey: true },
        { name: 'title', typeOid: 25, typeMod: -1, isKey: false },
      ],
    })
  })

  it('keeps text values as sent: NULL as null, unchanged TOAST as undefined, UTF-8 intact', () => {
    const values = ['42', null, undefined, 'naïve 漢字 🎉', '', 'a"b,c\\d{e}']
    expect(decodePgoutput(encode.insert(7, values))).toEqual({ tag: 'insert', relationOid: 7, new: values })
  })

  it('decodes updates with the old row, with the old key, and with neither', () => {
    expect(decodePgoutput(encode.update(7, ['1', 'new'], { kind: 'O', values: ['1', 'old'] }))).toEqual({ tag: 'update', relationOid: 7, old: ['1', 'old'], key: null, new: ['1', 'new'] })
    expect(decodePgoutput(encode.update(7, ['2', 'x'], { kind: 'K', values: ['1', null] }))).toEqual({ tag: 'update', relationOid: 7, old: null, key: ['1', null], new: ['2', 'x'] })
    expect(decodePgoutput(encode.update(7, ['1', 'x']))).toEqual({ tag: 'update', relationOid: 7, old: null, key: null, new: ['1', 'x'] })
  })

  it('decodes deletes with the old row or only its key', () => {
    expect(decodePgoutput(encode.delete(7, 'O', ['1', 'gone']))).toEqual({ tag: 'delete', relationOid: 7, old: ['1', 'gone'], key: null })
    expect(decodePgoutput(encode.delete(7, 'K', ['1', null]))).toEqual({ tag: 'delete', relationOid: 7, old: null, key: ['1', null] })
  })

  it('decodes truncate with its flags, type and origin messages', () => {
    expect(decodePgoutput(encode.truncate([7, 8], 3))).toEqual({ tag: 'truncate', relationOids: [7, 8], cascade: true, restartIdentity: true })
    expect(decodePgoutput(encode.type(16_500, 'public', 'mood'))).toEqual({ tag: 'type', typeOid: 16_500, schema: 'public', name: 'mood' })
    expect(decodePgoutput(encode.origin([0, 16], 'node_a'))).toEqual({ tag: 'origin', originLsn: '0/10', originName: 'node_a' })
  })

  it('rejects an unknown message with a tagged error', () => {
    expect(() => decodePgoutput(Buffer.from('Z'))).toThrow(/^\[live-sync\] unknown pgoutput message 'Z'/)
  })
})
