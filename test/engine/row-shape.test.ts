/**
 * Row shape = the model's JSON: every value a subscriber receives equals
 * `JSON.parse(JSON.stringify(instance))` of the same row loaded through
 * Sequelize, for every supported column type, generated nasty strings
 * included.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DataTypes, Model, type Sequelize } from 'sequelize'
import { modelJSON, prng, startHarness, type Harness } from '../support/engine-harness'

class Everything extends Model {}
class Hidden extends Model {}
class WithGetter extends Model {}
class Narrowed extends Model {}
class NarrowedVirtual extends Model {}

const SCHEMA = `
  CREATE TYPE mood AS ENUM ('happy', 'sad', 'with "quotes"', 'comma,here');
  CREATE TABLE everything (
    id serial PRIMARY KEY,
    org_id integer,
    int_col integer, small_col smallint, big_col bigint,
    numeric_col numeric(14, 4), decimal_col numeric,
    real_col real, double_col double precision,
    bool_col boolean,
    text_col text, varchar_col varchar(64), uuid_col uuid, enum_col mood,
    date_col date, ts_col timestamp, tstz_col timestamptz,
    json_col json, jsonb_col jsonb,
    text_array text[], int_array integer[],
    bytea_col bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE hidden (
    id serial PRIMARY KEY, org_id integer, name text, secret text,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE with_getter (
    id serial PRIMARY KEY, org_id integer, first_name text, last_name text,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE narrowed (
    id serial PRIMARY KEY, org_id integer, name text, password_hash text, reset_token text,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE narrowed_virtual (
    id serial PRIMARY KEY, org_id integer, first_name text, secret text,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()
  );
`

function defineModels(sequelize: Sequelize) {
  Everything.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    orgId: { type: DataTypes.INTEGER, field: 'org_id' },
    intCol: { type: DataTypes.INTEGER, field: 'int_col' },
    smallCol: { type: DataTypes.SMALLINT, field: 'small_col' },
    bigCol: { type: DataTypes.BIGINT, field: 'big_col' },
    numericCol: { type: DataTypes.DECIMAL(14, 4), field: 'numeric_col' },
    decimalCol: { type: DataTypes.DECIMAL, field: 'decimal_col' },
    realCol: { type: DataTypes.REAL, field: 'real_col' },
    doubleCol: { type: DataTypes.DOUBLE, field: 'double_col' },
    boolCol: { type: DataTypes.BOOLEAN, field: 'bool_col' },
    textCol: { type: DataTypes.TEXT, field: 'text_col' },
    varcharCol: { type: DataTypes.STRING(64), field: 'varchar_col' },
    uuidCol: { type: DataTypes.UUID, field: 'uuid_col' },
    enumCol: { type: DataTypes.ENUM('happy', 'sad', 'with "quotes"', 'comma,here'), field: 'enum_col' },
    dateCol: { type: DataTypes.DATEONLY, field: 'date_col' },
    tsCol: { type: DataTypes.DATE, field: 'ts_col' },
    tstzCol: { type: DataTypes.DATE, field: 'tstz_col' },
    jsonCol: { type: DataTypes.JSON, field: 'json_col' },
    jsonbCol: { type: DataTypes.JSONB, field: 'jsonb_col' },
    textArray: { type: DataTypes.ARRAY(DataTypes.TEXT), field: 'text_array' },
    intArray: { type: DataTypes.ARRAY(DataTypes.INTEGER), field: 'int_array' },
    byteaCol: { type: DataTypes.BLOB, field: 'bytea_col' },
  }, { sequelize, tableName: 'everything', underscored: true, liveSync: { subscriptionKey: 'orgId' } })

  // A default scope that leaves out a column: live rows must leave it out too.
  Hidden.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    orgId: { type: DataTypes.INTEGER, field: 'org_id' },
    name: DataTypes.TEXT,
    secret: DataTypes.TEXT,
  }, { sequelize, tableName: 'hidden', underscored: true, defaultScope: { attributes: { exclude: ['secret'] } }, liveSync: { subscriptionKey: 'orgId' } })

  // A custom getter and a VIRTUAL attribute: rows are built through the model.
  WithGetter.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    orgId: { type: DataTypes.INTEGER, field: 'org_id' },
    firstName: { type: DataTypes.TEXT, get() { return String(this.getDataValue('firstName') ?? '').toUpperCase() } },
    lastName: DataTypes.TEXT,
    fullName: { type: DataTypes.VIRTUAL, get() { return `${this.getDataValue('firstName')} ${this.getDataValue('lastName')}` } },
  }, { sequelize, tableName: 'with_getter', underscored: true, liveSync: { subscriptionKey: 'orgId' } })

  // The default scope hides one column, liveSync.exclude another.
  Narrowed.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    orgId: { type: DataTypes.INTEGER, field: 'org_id' },
    name: DataTypes.TEXT,
    passwordHash: { type: DataTypes.TEXT, field: 'password_hash' },
    resetToken: { type: DataTypes.TEXT, field: 'reset_token' },
  }, { sequelize, tableName: 'narrowed', underscored: true, defaultScope: { attributes: { exclude: ['passwordHash'] } }, liveSync: { subscriptionKey: 'orgId', exclude: ['resetToken'] } })

  // Built through the model (VIRTUAL attribute), with an allow-list.
  NarrowedVirtual.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    orgId: { type: DataTypes.INTEGER, field: 'org_id' },
    firstName: { type: DataTypes.TEXT, field: 'first_name' },
    secret: DataTypes.TEXT,
    shout: { type: DataTypes.VIRTUAL, get() { return String(this.getDataValue('firstName') ?? '').toUpperCase() } },
  }, { sequelize, tableName: 'narrowed_virtual', underscored: true, liveSync: { subscriptionKey: 'orgId', attributes: ['id', 'firstName', 'shout'] } })
}

/** Characters that break naive text and array-literal handling. */
const NASTY = ['"', '\'', ',', '\\', '{', '}', ' ', '\n', '\t', 'é', '漢', '🎉', 'NULL', 'null', '\\N', '()', '[]', ':', ';']

function nastyString(random: () => number, maxParts = 8): string {
  let out = ''
  const parts = Math.floor(random() * maxParts)
  for (let i = 0; i < parts; i++) out += random() < 0.6 ? NASTY[Math.floor(random() * NASTY.length)] : String.fromCharCode(97 + Math.floor(random() * 26))
  return out
}

function generatedRow(random: () => number, orgId: number) {
  const maybe = <T>(value: T): T | null => (random() < 0.15 ? null : value)
  return {
    orgId,
    intCol: maybe(Math.floor(random() * 2 ** 31) * (random() < 0.5 ? -1 : 1)),
    smallCol: maybe(Math.floor(random() * 32767)),
    bigCol: maybe(`${random() < 0.5 ? '-' : ''}${Math.floor(random() * 9e15)}${Math.floor(random() * 1000)}`),
    numericCol: maybe((random() * 1e6).toFixed(4)),
    decimalCol: maybe((random() * 1e3).toFixed(Math.floor(random() * 12))),
    realCol: maybe(Math.fround(random() * 1000)),
    doubleCol: maybe(random() * 1e12),
    boolCol: maybe(random() < 0.5),
    textCol: maybe(nastyString(random, 40)),
    varcharCol: maybe(nastyString(random, 16)),
    uuidCol: maybe('00000000-0000-4000-8000-000000000000'.replace(/0/g, () => Math.floor(random() * 16).toString(16))),
    enumCol: maybe(['happy', 'sad', 'with "quotes"', 'comma,here'][Math.floor(random() * 4)]),
    dateCol: maybe(`20${10 + Math.floor(random() * 20)}-0${1 + Math.floor(random() * 9)}-1${Math.floor(random() * 9)}`),
    tsCol: maybe(new Date(Date.UTC(2020, 0, 1) + Math.floor(random() * 1e11))),
    tstzCol: maybe(new Date(Date.UTC(2020, 0, 1) + Math.floor(random() * 1e11))),
    jsonCol: maybe({ text: nastyString(random), list: [1, 'two', null, { deep: nastyString(random) }] }),
    jsonbCol: maybe({ n: random(), flag: random() < 0.5, s: nastyString(random), nested: { arr: [nastyString(random), 3] } }),
    textArray: maybe(Array.from({ length: Math.floor(random() * 5) }, () => (random() < 0.2 ? null : nastyString(random)))),
    intArray: maybe(Array.from({ length: Math.floor(random() * 5) }, () => (random() < 0.2 ? null : Math.floor(random() * 1000) - 500))),
    byteaCol: maybe(Buffer.from(Array.from({ length: Math.floor(random() * 16) }, () => Math.floor(random() * 256)))),
  }
}

describe('row shape equals the model\'s JSON', () => {
  let harness: Harness

  beforeAll(async () => {
    harness = await startHarness({ name: 'engine_row_shape', schema: SCHEMA, models: defineModels })
  })
  afterAll(async () => {
    await harness?.close()
  })

  it('for every supported type, on insert, update and delete, with generated strings', async () => {
    const collector = harness.collect(7)
    const random = prng(20261125)
    const created = []
    for (let i = 0; i < 60; i++) created.push(await Everything.create(generatedRow(random, 7)))
    // An all-NULL row and edge values.
    created.push(await Everything.create({ orgId: 7 }))
    created.push(await Everything.create({ orgId: 7, textCol: '', textArray: [], intArray: [], bigCol: '-9223372036854775808', doubleCol: 1e-300, realCol: -0.5, jsonbCol: [], jsonCol: 'just a string', byteaCol: Buffer.alloc(0) }))

    const inserts = await collector.changeCount(created.length)
    for (const change of inserts) {
      expect(change.op).toBe('insert')
      expect(change.row).toEqual(modelJSON(await Everything.findByPk(change.id as number)))
    }

    // Updates: each row gets new random values in every column.
    for (const row of created.slice(0, 20)) await row.update(generatedRow(random, 7))
    const afterUpdates = await collector.changeCount(created.length + 20)
    for (const change of afterUpdates.slice(created.length)) {
      expect(change.op).toBe('update')
      expect(change.row).toEqual(modelJSON(await Everything.findByPk(change.id as number)))
    }

    // Deletes carry the deleted row, as it was.
    const doomed = await Everything.findAll({ where: { id: created.slice(0, 5).map(row => row.get('id') as number) }, order: [['id', 'ASC']] })
    const expected = doomed.map(modelJSON)
    await Everything.destroy({ where: { id: doomed.map(row => row.get('id') as number) } })
    const all = await collector.changeCount(created.length + 25)
    const deletes = all.slice(created.length + 20)
    expect(deletes.map(change => change.op)).toEqual(Array(5).fill('delete'))
    // One DELETE removes rows in heap order, not id order.
    const byId = (a: { id: unknown }, b: { id: unknown }) => Number(a.id) - Number(b.id)
    expect(deletes.map(change => change.row).sort((a, b) => byId(a as { id: unknown }, b as { id: unknown }))).toEqual(expected)
  })

  it('leaves out attributes the default scope excludes', async () => {
    const collector = harness.collect(8)
    const row = await Hidden.create({ orgId: 8, name: 'visible', secret: 'never on the wire' })
    const [change] = await collector.changeCount(1)
    expect(change!.row).toEqual(modelJSON(await Hidden.findByPk(row.get('id') as number)))
    expect(JSON.stringify(collector.batches[0]!.frame())).not.toContain('never on the wire')
  })

  it('leaves out what liveSync.exclude names on top of the default scope', async () => {
    const collector = harness.collect(11)
    const row = await Narrowed.create({ orgId: 11, name: 'visible', passwordHash: 'hash-never-sent', resetToken: 'token-never-sent' })
    const [change] = await collector.changeCount(1)
    const { resetToken, ...expected } = modelJSON(await Narrowed.findByPk(row.get('id') as number)) as Record<string, unknown>
    expect(resetToken).toBe('token-never-sent') // the app's own reads still have it
    expect(change!.row).toEqual(expected)
    expect(Object.keys(change!.row)).toEqual(['id', 'orgId', 'name', 'createdAt', 'updatedAt'])
    expect(collector.batches[0]!.frame()).not.toMatch(/never-sent|passwordHash|resetToken/)
  })

  it('keeps only what liveSync.attributes lists, also for rows built through the model', async () => {
    const collector = harness.collect(12)
    const row = await NarrowedVirtual.create({ orgId: 12, firstName: 'ada', secret: 'secret-never-sent' })
    const [change] = await collector.changeCount(1)
    expect(change!.row).toEqual({ id: row.get('id'), firstName: 'ada', shout: 'ADA' })
    expect(collector.batches[0]!.frame()).not.toContain('secret-never-sent')
  })

  it('builds rows through the model when it has custom getters or VIRTUAL attributes', async () => {
    const collector = harness.collect(9)
    const row = await WithGetter.create({ orgId: 9, firstName: 'ada', lastName: 'lovelace' })
    const [change] = await collector.changeCount(1)
    const expected = modelJSON(await WithGetter.findByPk(row.get('id') as number)) as Record<string, unknown>
    expect(expected.firstName).toBe('ADA')
    expect(expected.fullName).toBe('ada lovelace')
    expect(change!.row).toEqual(expected)
  })

  it('shapes rows written by plain SQL exactly like rows written through the model', async () => {
    const collector = harness.collect(10)
    await harness.sequelize.query(`INSERT INTO everything (org_id, text_array, int_array, jsonb_col, date_col, tstz_col, bytea_col, numeric_col)
      VALUES (10, ARRAY['a,b', 'quote"d', 'back\\slash', NULL, '{braced}'], '{1,NULL,-3}', '{"k": [1, "x"]}', '2026-02-28', '2026-01-01 12:00:00+05', '\\x00ff10', 12.5)`)
    const [change] = await collector.changeCount(1)
    expect(change!.row).toEqual(modelJSON(await Everything.findByPk(change!.id as number)))
    expect(change!.row.textArray).toEqual(['a,b', 'quote"d', 'back\\slash', null, '{braced}'])
  })
})
