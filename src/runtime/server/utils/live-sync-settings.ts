import { useRuntimeConfig } from 'nitropack/runtime'
import { liveSyncLogger } from '../engine/logger'
import { resolveSecuritySettings, type LiveSyncSecurityConfig, type LiveSyncSecuritySettings } from '../security-settings'

let settings: LiveSyncSecuritySettings | null = null

/**
 * The socket's security settings from runtime config (`NUXT_LIVE_SYNC_*`
 * overrides them), resolved once; a wrong value is reported once, at the
 * first call (the Nitro plugin makes it at start).
 */
export function useLiveSyncSettings(): LiveSyncSecuritySettings {
  if (!settings) {
    const config = (useRuntimeConfig() as { liveSync?: LiveSyncSecurityConfig }).liveSync
    settings = resolveSecuritySettings(config, message => liveSyncLogger().warn(message))
  }
  return settings
}
