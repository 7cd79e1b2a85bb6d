import { DataTypes, Model, Sequelize } from 'sequelize'
import { PRIORITIES, type Priority } from '#shared/types'

export class Organization extends Model {
  declare id: number
  declare name: string
}

export class Task extends Model {
  declare id: number
  declare organizationId: number
  declare title: string
  declare done: boolean
  declare notes: string | null
  declare priority: Priority
  declare dueOn: string | null
  declare createdAt: Date
  declare updatedAt: Date
}

/**
 * Built only when DATABASE_URL is set (`npm run dev` sets it): without it
 * pages still render, the API answers 503 and live sync stays off.
 */
function connect(): Sequelize | null {
  const url = process.env.DATABASE_URL
  if (!url) return null
  const instance = new Sequelize(url, { logging: false, pool: { max: 5 } })
  Organization.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    name: { type: DataTypes.TEXT, allowNull: false },
  }, {
    sequelize: instance,
    tableName: 'organizations',
    underscored: true,
    timestamps: false,
    // An organization's page (useLiveSync(orgId)) also gets its own row.
    liveSync: { subscriptionKey: 'id' },
  })
  Task.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    organizationId: { type: DataTypes.INTEGER, allowNull: false },
    title: { type: DataTypes.TEXT, allowNull: false },
    done: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
    notes: { type: DataTypes.TEXT },
    priority: { type: DataTypes.ENUM(...PRIORITIES), allowNull: false, defaultValue: 'normal' },
    dueOn: { type: DataTypes.DATEONLY },
  }, {
    sequelize: instance,
    tableName: 'tasks',
    underscored: true,
    liveSync: { subscriptionKey: 'organizationId' },
  })
  return instance
}

export const sequelize = connect()

/** The instance, or a 503 for API routes when no database is configured. */
export function db(): Sequelize {
  if (!sequelize) throw createError({ statusCode: 503, statusMessage: 'DATABASE_URL is not set' })
  return sequelize
}
