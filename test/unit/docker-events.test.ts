import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import pino from 'pino'
import type { ProviderEvent } from '../../sidecar/core/provider.js'
import { dockerConfigSchema } from '../../sidecar/providers/docker/config.js'
import { DockerProvider } from '../../sidecar/providers/docker/provider.js'
import { tempDir } from '../helpers/net.js'

/**
 * A fake engine on a unix socket: the first /events connection sends one event and drops, the
 * second stays open. Inspect answers a labelled running container.
 */
describe('docker event stream', () => {
  const tmp = tempDir('relight-ev-')
  const socket = join(tmp.dir, 'docker.sock')
  let eventConnections = 0
  const open = new Set<import('node:http').ServerResponse>()
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname === '/events') {
      eventConnections++
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write(`${JSON.stringify({ Type: 'container', Action: 'start', Actor: { ID: 'c1', Attributes: {} } })}\n`)
      if (eventConnections === 1) setTimeout(() => res.destroy(), 50) // dropped mid-stream
      else open.add(res)
      return
    }
    if (url.pathname === '/containers/c1/json') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ Id: 'c1', Name: '/c1', State: { Status: 'running' }, Config: { Labels: { 'relight.domain': 'c1.localhost', 'relight.port': '80' } }, HostConfig: { NetworkMode: 'host' } }))
      return
    }
    res.writeHead(404).end('{"message":"not here"}')
  })
  after(() => {
    for (const res of open) res.destroy()
    server.close()
    tmp.remove()
  })

  it('reconnects after a dropped stream and asks for a resync on every connection', { timeout: 10_000 }, async () => {
    await new Promise<void>((resolve) => server.listen(socket, resolve))
    const provider = new DockerProvider(dockerConfigSchema.parse({ socket }), pino({ level: 'silent' }))
    const controller = new AbortController()
    const events: ProviderEvent[] = []
    let done!: () => void
    const twice = new Promise<void>((resolve) => (done = resolve))
    provider.watch((e) => {
      events.push(e)
      if (events.filter((x) => x.type === 'upsert').length === 2) done()
    }, controller.signal)
    try {
      await twice
      assert.equal(eventConnections, 2)
      assert.equal(events.filter((e) => e.type === 'resync').length, 2)
      const upsert = events.find((e) => e.type === 'upsert')
      assert.ok(upsert && upsert.type === 'upsert')
      assert.deepEqual(upsert.backend.upstreams, ['127.0.0.1:80'])
    } finally {
      controller.abort()
      await provider.close()
    }
  })
})
