/**
 * A watch stream that stalls (half-open connection, a proxy that swallowed the end) is given up
 * once it is silent for timeoutSeconds + the grace, with PROVIDER_UNAVAILABLE (the informer then
 * watches or lists again). A loopback HTTP server plays the API server: it accepts the watch,
 * sends one event and then nothing, and never ends the response.
 */
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { isRelightError } from '../../sidecar/core/errors.js'
import { DEFAULT_WATCH_TIMEOUT_S, type KubeClient } from '../../sidecar/providers/kubernetes/client.js'
import { type LoopbackApi, loopbackApi } from '../helpers/kubernetes-loopback.js'

describe('kubernetes client: watches have a client-side timeout', () => {
  let api: LoopbackApi
  let client: KubeClient
  const seen: URL[] = []
  before(async () => {
    api = await loopbackApi((req: IncomingMessage, res) => {
      seen.push(new URL(req.url ?? '/', 'http://x'))
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'web-1' } } })}\n`)
      // …and then silence: no more events, no end.
    }, { watchGrace: 100 })
    client = api.client
  })
  after(async () => {
    await api?.close()
  })

  it('a watch silent for timeoutSeconds + grace rejects with PROVIDER_UNAVAILABLE, after the events it did send', async () => {
    const stream = await client.watch<{ metadata: { name: string } }>('/api/v1/namespaces/shop/pods', { timeoutSeconds: 1 }, AbortSignal.timeout(10_000))
    const names: string[] = []
    await assert.rejects(
      (async () => {
        for await (const event of stream) names.push(event.object.metadata.name)
      })(),
      (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE') && /went silent/.test(e.message),
    )
    assert.deepEqual(names, ['web-1'])
    assert.equal(seen.at(-1)?.searchParams.get('timeoutSeconds'), '1')
  })

  it('a watch that names no timeoutSeconds sends the default, so the server ends it and the client bound holds', async () => {
    const stop = new AbortController()
    const stream = await client.watch('/api/v1/namespaces/shop/pods', { labelSelector: 'app=web' }, stop.signal)
    assert.equal(seen.at(-1)?.searchParams.get('timeoutSeconds'), String(DEFAULT_WATCH_TIMEOUT_S))
    const it = stream[Symbol.asyncIterator]()
    await it.next()
    stop.abort()
    await assert.rejects(it.next())
  })
})
