import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Nuxt } from '@nuxt/schema'

type Upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => unknown

/**
 * In `nuxi dev`, Nitro's dev server proxies WebSocket upgrades and drops the
 * proxy's promise; a browser that resets its live sync socket (a tab closed
 * or reloaded at the wrong moment) then rejects it unhandled and the CLI
 * restarts Nuxt ("Restarting Nuxt due to error: Error: read ECONNRESET",
 * nitrojs/nitro#4493). Live sync keeps a socket open in every tab, so it
 * catches that rejection and drops the socket instead.
 */
export function guardDevWebSocketUpgrades(nuxt: Nuxt): void {
  nuxt.hook('ready', () => {
    const server = nuxt.server as { upgrade?: Upgrade } | undefined
    const upgrade = server?.upgrade
    if (!server || typeof upgrade !== 'function') return
    server.upgrade = (req, socket, head) => Promise.resolve(upgrade.call(server, req, socket, head)).catch(() => {
      socket.destroy()
    })
  })
}
