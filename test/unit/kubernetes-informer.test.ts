/**
 * Kubernetes informer reconnects (issue 21 §4.2; a real loopback server, not MockAgent): the
 * backoff is reset as soon as a watch opens, so a stream that breaks after an outage is listed
 * again within the first delay (the contention run measured reopens after 4.7 → 22 s when the
 * delay was reset only when a stream *ended*); a failure re-lists (never resumes a watch); and
 * `connected` reports false on the failure and true once listed and watching again.
 */
import assert from 'node:assert/strict'
import type { ServerResponse } from 'node:http'
import { describe, it } from 'node:test'
import pino from 'pino'
import { runInformer } from '../../sidecar/providers/kubernetes/informer.js'
import type { Workload } from '../../sidecar/providers/kubernetes/workloads.js'
import { loopbackApi } from '../helpers/kubernetes-loopback.js'
import { until } from '../helpers/wait.js'

const silent = pino({ level: 'silent' })

describe('kubernetes informer: reconnects', () => {
  it('3 failures, a watch opens, it breaks: the next list comes after the FIRST delay (200 ms), not the grown one (1.6 s)', async (t) => {
    const lists: number[] = []
    const watches: string[] = []
    let brokeAt = 0
    let open: ServerResponse | undefined
    const api = await loopbackApi((req, res) => {
      res.setHeader('content-type', 'application/json')
      if (req.url?.includes('watch=1')) {
        watches.push(new URL(req.url, 'http://x').searchParams.get('resourceVersion') ?? '')
        res.writeHead(200)
        res.write(`${JSON.stringify({ type: 'MODIFIED', object: { metadata: { name: 'web', resourceVersion: '6' } } })}\n`)
        open = res
        return
      }
      lists.push(performance.now())
      if (lists.length <= 3) {
        res.statusCode = 500
        return void res.end(JSON.stringify({ kind: 'Status', code: 500, message: 'etcd is down' }))
      }
      res.end(JSON.stringify({ metadata: { resourceVersion: '5' }, items: [] }))
    })
    const controller = new AbortController()
    t.after(async () => {
      controller.abort()
      await api.close()
    })
    const connected: boolean[] = []
    const changed: string[] = []
    void runInformer<Workload>(
      api.client,
      '/apis/apps/v1/namespaces/shop/deployments',
      {},
      { relisted: () => undefined, changed: (type, w) => changed.push(`${type} ${w.metadata.name}`), connected: (live) => connected.push(live) },
      silent,
      controller.signal,
    )
    // 3 failed lists (200 + 400 + 800 ms of backoff), then a list and a watch.
    await until(() => open !== undefined && changed.length === 1, 'the watch to open and deliver an event', 20_000)
    assert.deepEqual(connected, [true], 'connected once listed and watching (failed lists before the first success report nothing new)')
    // The stream breaks (connection reset mid-watch).
    brokeAt = performance.now()
    open?.socket?.destroy()
    await until(() => lists.length >= 5, 'the informer to list again', 20_000)
    const gap = (lists[4] ?? 0) - brokeAt
    assert.ok(gap < 1000, `listed again ${gap.toFixed(0)} ms after the break: the backoff was not reset when the watch opened (it had grown to 1600 ms)`)
    assert.ok(!watches.includes('6'), `after a failure it lists again instead of resuming the watch from rv 6 (watches from: ${watches.join(', ')})`)
    await until(() => connected.length === 3, 'connected to report the outage and the recovery', 20_000)
    assert.deepEqual(connected, [true, false, true])
  })
})
