/**
 * `nuxi dev` only (`<path>/devtools`): the page of the Nuxt DevTools tab
 * "Live Sync" (an iframe). Read from the module's files on each request.
 */
import { readFile } from 'node:fs/promises'
import { defineEventHandler, setResponseHeader } from 'h3'
import { devtoolsPage } from '#live-sync/dev'

export default defineEventHandler(async (event) => {
  setResponseHeader(event, 'content-type', 'text/html; charset=utf-8')
  setResponseHeader(event, 'cache-control', 'no-store')
  return readFile(devtoolsPage, 'utf8')
})
