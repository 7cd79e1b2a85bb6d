/**
 * `nuxi dev` only: once the engine discovered the app's watched models,
 * writes the declaration that types `useLiveSync`'s model names and rows
 * (`.nuxt/types/live-sync-models.d.ts`) when it changed, and caches the
 * models for the next build (which may not be able to load them itself,
 * e.g. without a database URL).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { defineNitroPlugin } from '#imports'
import { modelCacheFile, modelTypesFile, sequelizeModule } from '#live-sync/dev'
import { liveSyncLogger } from '../engine/logger'
import { describeModelTypes, renderModelDeclarations } from '../model-declarations'
import { onLiveSyncEngine } from '../utils/live-sync-engine'

async function writeIfChanged(file: string, contents: string): Promise<boolean> {
  const previous = await readFile(file, 'utf8').catch(() => null)
  if (previous === contents) return false
  await mkdir(dirname(file), { recursive: true })
  await writeFile(file, contents)
  return true
}

export default defineNitroPlugin(() => {
  onLiveSyncEngine((engine) => {
    const models = describeModelTypes(engine.watched)
    const declaration = renderModelDeclarations(models, `the watched models of ${sequelizeModule}`)
    void (async () => {
      await mkdir(dirname(modelCacheFile), { recursive: true })
      await writeFile(modelCacheFile, JSON.stringify({ writtenAt: Date.now(), models }))
      if (await writeIfChanged(modelTypesFile, declaration)) {
        liveSyncLogger().info(`[live-sync] typed useLiveSync's model names from the running server: ${models.map(model => model.name).join(', ') || '(none)'}.`)
      }
    })().catch(error => liveSyncLogger().warn(`[live-sync] could not write the model types (${modelTypesFile}): ${(error as Error).message}`))
  })
})
