/**
 * Kubernetes informer: a watch that keeps answering 410 Gone makes it back off instead of
 * relisting in a tight loop (a real loopback server, not MockAgent).
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import pino from 'pino'
import { KubeClient } from '../../sidecar/providers/kubernetes/client.js'
import { runInformer } from '../../sidecar/providers/kubernetes/informer.js'
import type { Workload } from '../../sidecar/providers/kubernetes/workloads.js'

const silent = pino({ level: 'silent' })


describe('kubernetes informer: 410 Gone', () => {
  it('F3: an informer whose watch keeps answering 410 Gone backs off instead of relisting in a tight loop', async () => {
    // A real server on loopback (MockAgent answers in microtasks and the loop then starves the event loop outright).
    let lists = 0
    const server = createServer((req, res) => {
      res.setHeader('content-type', 'application/json')
      if (req.url?.includes('watch=1')) {
        res.statusCode = 410
        res.end(JSON.stringify({ kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' }))
      } else {
        lists++
        res.end(JSON.stringify({ metadata: { resourceVersion: '5' }, items: [] }))
      }
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const { port } = server.address() as AddressInfo
    const local = new KubeClient({ server: `http://127.0.0.1:${port}`, token: 't', namespace: 'shop', source: 'test' })
    const controller = new AbortController()
    try {
      void runInformer<Workload>(local, '/apis/apps/v1/namespaces/shop/deployments', {}, { relisted: () => undefined, changed: () => undefined }, silent, controller.signal)
      await new Promise((r) => setTimeout(r, 1000)) // measuring a rate: a fixed window is the point here
    } finally {
      controller.abort()
      await local.close()
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    }
    assert.ok(lists <= 10, `full lists in one second against a server whose watches answer 410: ${lists}`)
  })
})
