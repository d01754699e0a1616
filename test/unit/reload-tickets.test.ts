import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import type { Backend } from '../../sidecar/core/backend.js'
import { Registry } from '../../sidecar/core/registry.js'
import { TicketLedger } from '../../sidecar/core/tickets.js'
import { MemoryProvider } from '../fakes/memory-provider.js'

const silent = pino({ level: 'silent' })

/**
 * A reload that replaces a provider instance (docker/podman/k8s/swarm block changed) carries the
 * in-flight count to the new Backend object, but the open tickets still point at the old one:
 * the line that ends the request decrements the removed backend, and the new one keeps the
 * count for ever (it never goes idle again).
 */
describe('provider replaced by reload while a request is in flight', () => {
  it('the request\'s access-log line ends it on the backend that now serves the host', async () => {
    const config = parseConfig('base_domains: []\n', 'test')
    const backends = () => [{ id: 'b', hosts: ['b.localhost'], state: 'running' as const, upstreams: ['127.0.0.1:9'] }]
    const old = new MemoryProvider(backends())
    const registry = new Registry([old], config, silent)
    await registry.start()
    const ledger = new TicketLedger<Backend>()
    const caddy = { open: true, proven: false }
    ledger.connectionOpened(caddy)
    const before = registry.index.resolve('b.localhost')!
    before.started(true) // what /auth does...
    const ticket = ledger.issue(before, 24 * 3600_000)! // ...with the ticket Caddy will log
    await registry.replaceProvider(old, new MemoryProvider(backends()))
    const after = registry.index.resolve('b.localhost')!
    assert.equal(after.inflight, 1)
    assert.equal(ledger.finish(ticket, caddy), true) // the stream ends, Caddy logs its line
    assert.equal(after.inflight, 0, 'the serving backend still counts the finished request: pinned awake')
    registry.close()
  })
})
