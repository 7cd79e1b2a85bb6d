/**
 * `liveSync.attributes` / `liveSync.exclude` in a model's options: what a
 * live row may expose, checked when the engine starts.
 */
import { describe, expect, it } from 'vitest'
import { DataTypes, Model, Sequelize } from 'sequelize'
import { LiveSyncError } from '../../src/runtime/server/engine/errors'
import { describeWatchedModel } from '../../src/runtime/server/engine/watch-registry'
import type { LiveSyncWatchOptions } from '../../src/runtime/server/engine/watch-options'

function userModel(defaultScope?: object) {
  const sequelize = new Sequelize('postgres://nobody@127.0.0.1:1/none', { logging: false })
  class User extends Model {}
  User.init({
    id: { type: DataTypes.INTEGER, primaryKey: true },
    orgId: { type: DataTypes.INTEGER, field: 'org_id' },
    email: DataTypes.TEXT,
    passwordHash: { type: DataTypes.TEXT, field: 'password_hash' },
  }, { sequelize, tableName: 'users', timestamps: false, defaultScope })
  return User
}

const attributesOf = (options: LiveSyncWatchOptions, defaultScope?: object) =>
  describeWatchedModel(userModel(defaultScope), options).attributes.map(attribute => attribute.attribute)

function failure(options: LiveSyncWatchOptions): LiveSyncError {
  try {
    describeWatchedModel(userModel(), options)
  }
  catch (error) {
    expect(error).toBeInstanceOf(LiveSyncError)
    return error as LiveSyncError
  }
  throw new Error('describeWatchedModel accepted the options')
}

describe('what a live row exposes', () => {
  it('is every attribute by default, and what the default scope leaves', () => {
    expect(attributesOf({ subscriptionKey: 'orgId' })).toEqual(['id', 'orgId', 'email', 'passwordHash'])
    expect(attributesOf({ subscriptionKey: 'orgId' }, { attributes: { exclude: ['passwordHash'] } })).toEqual(['id', 'orgId', 'email'])
  })

  it('narrows with exclude and attributes, after the default scope', () => {
    expect(attributesOf({ subscriptionKey: 'orgId', exclude: ['passwordHash'] })).toEqual(['id', 'orgId', 'email'])
    expect(attributesOf({ subscriptionKey: 'orgId', attributes: ['id', 'email', 'passwordHash'] }, { attributes: { exclude: ['passwordHash'] } })).toEqual(['id', 'email'])
    // The key may be left out of rows: rows are still routed by its column.
    const watched = describeWatchedModel(userModel(), { subscriptionKey: 'orgId', exclude: ['orgId'] })
    expect(watched.attributes.map(attribute => attribute.attribute)).toEqual(['id', 'email', 'passwordHash'])
    expect(watched.key).toEqual({ attribute: 'orgId', field: 'org_id' })
  })

  it('refuses names that are not attributes, and leaving out the id, saying what to do', () => {
    expect(failure({ subscriptionKey: 'orgId', exclude: ['password_hash'] }).message).toMatch(/liveSync\.exclude names "password_hash", which is not an attribute of the model \(attributes: id, orgId, email, passwordHash\)/)
    expect(failure({ subscriptionKey: 'orgId', attributes: 'email' as unknown as string[] }).message).toMatch(/liveSync\.attributes must be an array of attribute names/)
    expect(failure({ subscriptionKey: 'orgId', attributes: ['email'] }).message).toMatch(/leave out the id attribute id, which the browser needs to patch rows; keep it/)
    expect(failure({ subscriptionKey: 'orgId', exclude: ['id'] }).code).toBe('WATCH_OPTIONS')
  })
})
