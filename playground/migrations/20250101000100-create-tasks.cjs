'use strict'
/**
 * Playground schema, part 2. Runs with umzug (`up({ context })`, context = the
 * QueryInterface) as well as with sequelize-cli (`up(queryInterface, Sequelize)`).
 */
const { DataTypes, literal } = require('sequelize')

const queryInterfaceOf = arg => (arg && arg.context !== undefined ? arg.context : arg)

module.exports = {
  async up(arg) {
    const queryInterface = queryInterfaceOf(arg)
    await queryInterface.createTable('tasks', {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      organization_id: {
        type: DataTypes.INTEGER,
        allowNull: false,
        references: { model: 'organizations', key: 'id' },
        onDelete: 'CASCADE',
      },
      title: { type: DataTypes.TEXT, allowNull: false },
      done: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      notes: { type: DataTypes.TEXT },
      priority: { type: DataTypes.ENUM('low', 'normal', 'high'), allowNull: false, defaultValue: 'normal' },
      due_on: { type: DataTypes.DATEONLY },
      // Database-side defaults, so rows inserted from psql need no timestamps.
      created_at: { type: DataTypes.DATE, allowNull: false, defaultValue: literal('now()') },
      updated_at: { type: DataTypes.DATE, allowNull: false, defaultValue: literal('now()') },
    })
    await queryInterface.addIndex('tasks', ['organization_id'])
  },
  async down(arg) {
    const queryInterface = queryInterfaceOf(arg)
    await queryInterface.dropTable('tasks')
    // createTable made the enum type; dropTable leaves it behind.
    await queryInterface.sequelize.query('DROP TYPE IF EXISTS "enum_tasks_priority"')
  },
}
