/**
 * What live sync exists to replace, built the way an app would: a row
 * trigger calls `pg_notify` with the row as JSON, a Node process LISTENs
 * and forwards each notification to the WebSockets subscribed to the row's
 * key, in the same frames live sync sends (one `tx` per notification,
 * serialized once per key). Run as a child process by run.mjs:
 * `node notify-server.mjs <databaseUrl> <port>`; prints `listening` when ready.
 */
import { pathToFileURL } from 'node:url'
import pg from 'pg'
import { WebSocketServer } from 'ws'

export const CHANNEL = 'live_sync_bench'

/** The trigger (created on `tasks` for the comparison, dropped after). */
export const TRIGGER_SQL = `
CREATE OR REPLACE FUNCTION live_sync_bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('${CHANNEL}', json_build_object('op', lower(TG_OP), 'row', row_to_json(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END))::text);
  RETURN NULL;
END $$;
CREATE TRIGGER live_sync_bench_notify AFTER INSERT OR UPDATE OR DELETE ON tasks FOR EACH ROW EXECUTE FUNCTION live_sync_bench_notify();
`
export const DROP_TRIGGER_SQL = 'DROP TRIGGER IF EXISTS live_sync_bench_notify ON tasks; DROP FUNCTION IF EXISTS live_sync_bench_notify()'

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [databaseUrl, port] = process.argv.slice(2)
  /** @type {Map<string, Set<import('ws').WebSocket>>} */
  const subscribers = new Map()
  const server = new WebSocketServer({ host: '127.0.0.1', port: Number(port), perMessageDeflate: false })
  server.on('connection', (socket) => {
    const keys = new Set()
    socket.send(JSON.stringify({ type: 'hello', v: 1, epoch: 'notify', cursor: null }))
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString())
      if (message.type !== 'sub') return
      const key = String(message.key)
      keys.add(key)
      let set = subscribers.get(key)
      if (!set) subscribers.set(key, (set = new Set()))
      set.add(socket)
      socket.send(JSON.stringify({ type: 'subscribed', key, cursor: null, replayed: 0 }))
    })
    socket.on('close', () => {
      for (const key of keys) subscribers.get(key)?.delete(socket)
    })
  })
  const client = new pg.Client(databaseUrl)
  await client.connect()
  client.on('notification', (notification) => {
    const { op, row } = JSON.parse(notification.payload ?? '{}')
    const key = String(row.organization_id)
    const set = subscribers.get(key)
    if (!set || set.size === 0) return
    const frame = Buffer.from(JSON.stringify({ type: 'tx', key, cursor: null, changes: [{ op, model: 'Task', id: row.id, row: { id: row.id, organizationId: row.organization_id, title: row.title, done: row.done, createdAt: row.created_at, updatedAt: row.updated_at, projectId: row.project_id } }] }))
    for (const socket of set) socket.send(frame, { binary: false })
  })
  await client.query(`LISTEN ${CHANNEL}`)
  process.stdout.write('listening\n')
  process.on('SIGTERM', () => {
    server.close()
    void client.end().finally(() => process.exit(0))
  })
}
