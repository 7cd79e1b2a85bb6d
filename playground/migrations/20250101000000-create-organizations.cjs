'use strict'
/**
 * Playground schema, part 1. Runs with umzug (`up({ context })`, context = the
 * QueryInterface) as well as with sequelize-cli (`up(queryInterface, Sequelize)`).
 */
const { DataTypes } = require('sequelize')

const queryInterfaceOf = arg => (arg && arg.context !== undefined ? arg.context : arg)

module.exports = {
  async up(arg) {
    await queryInterfaceOf(arg).createTable('organizations', {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      name: { type: DataTypes.TEXT, allowNull: false },
    })
  },
  async down(arg) {
    await queryInterfaceOf(arg).dropTable('organizations')
  },
}
