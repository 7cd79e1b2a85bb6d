export * from './lsn'
export * from './protocol'
export * from './patch'
