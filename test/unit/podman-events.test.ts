/**
 * The Podman provider's event stream over a real unix socket served by a stand-in for
 * `GET /libpod/events`: events of labelled containers become inspect + upsert/remove, others
 * are ignored, and a dropped stream reconnects and asks the registry to resync.
 */
import assert from 'node:assert/strict'
import { createServer, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import pino from 'pino'
import type { ProviderEvent } from '../../sidecar/core/provider.js'
import { podmanConfigSchema } from '../../sidecar/providers/podman/config.js'
import { PodmanProvider } from '../../sidecar/providers/podman/provider.js'
import { tempDir } from '../helpers/net.js'

const ID = 'a'.repeat(64)
const inspect = (status: string) => ({
  Id: ID,
  Name: 'web',
  State: { Status: status, Running: status === 'running', Paused: status === 'paused' },
  Config: { Labels: { 'relight.domain': 'web.localhost', 'relight.port': '3000' } },
  HostConfig: { NetworkMode: 'host' },
})

describe('podman provider: event stream', () => {
  const tmp = tempDir('relight-pev-')
  const socket = join(tmp.dir, 'podman.sock')
  let status = 'running'
  let streams: ServerResponse[] = []
  let onStream: () => void = () => undefined
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname === '/v4.0.0/libpod/events') {
      assert.deepEqual(JSON.parse(url.searchParams.get('filters') ?? '{}'), { type: ['container'] })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.flushHeaders()
      streams.push(res)
      onStream()
      return
    }
    if (url.pathname === `/v4.0.0/libpod/containers/${ID}/json`) return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(inspect(status)))
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"no such container","response":404}')
  })
  after(async () => {
    for (const s of streams) s.destroy()
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
    tmp.remove()
  })

  it('reports labelled containers\' changes, ignores others, and resyncs after a reconnect', async () => {
    await new Promise<void>((r) => server.listen(socket, () => r()))
    const provider = new PodmanProvider(podmanConfigSchema.parse({ socket }), pino({ level: 'silent' }), {
      defaults: { app_port: 8080, sleep: 'stop', fallback_sleep: 'pause' },
    })
    const events: ProviderEvent[] = []
    let notify: () => void = () => undefined
    const next = (match: (e: ProviderEvent) => boolean) =>
      new Promise<ProviderEvent>((resolve) => {
        const check = () => {
          const found = events.find(match)
          if (found) resolve(found)
        }
        notify = check
        check()
      })
    const connected = () => new Promise<void>((r) => (onStream = r))
    const controller = new AbortController()
    try {
      const first = connected()
      provider.watch((e) => {
        events.push(e)
        notify()
      }, controller.signal)
      await first
      const line = (action: string, labels: Record<string, string>, id = ID) =>
        `${JSON.stringify({ Type: 'container', Action: action, status: action, id, Actor: { ID: id, Attributes: { name: 'web', ...labels } } })}\n`
      status = 'paused'
      streams.at(-1)?.write(line('exec_create', { 'relight.domain': 'web.localhost' })) // not a state change
      streams.at(-1)?.write(line('pause', { other: 'x' }, 'b'.repeat(64))) // not ours
      streams.at(-1)?.write(line('pause', { 'relight.domain': 'web.localhost' }))
      const upsert = await next((e) => e.type === 'upsert')
      assert.ok(upsert.type === 'upsert')
      assert.equal(upsert.backend.state, 'paused')
      assert.deepEqual(upsert.backend.upstreams, ['127.0.0.1:3000'])
      streams.at(-1)?.write(line('remove', { 'relight.domain': 'web.localhost' }))
      assert.deepEqual(await next((e) => e.type === 'remove'), { type: 'remove', id: ID })
      assert.equal(events.filter((e) => e.type === 'upsert').length, 1, 'other containers and other actions are ignored')

      const again = connected()
      streams.at(-1)?.destroy() // the engine restarts
      await again
      await next((e) => e.type === 'resync')
    } finally {
      controller.abort()
      await provider.close()
    }
  })
})
