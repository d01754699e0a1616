/**
 * Kubernetes informer: a watch that keeps answering 410 Gone makes it back off instead of
 * relisting in a tight loop (a real loopback server, not MockAgent).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pino from 'pino'
import { runInformer } from '../../sidecar/providers/kubernetes/informer.js'
import type { Workload } from '../../sidecar/providers/kubernetes/workloads.js'
import { loopbackApi } from '../helpers/kubernetes-loopback.js'
import { until } from '../helpers/wait.js'

const silent = pino({ level: 'silent' })

describe('kubernetes informer: 410 Gone', () => {
  it('F3: an informer whose watch keeps answering 410 Gone backs off instead of relisting in a tight loop', async (t) => {
    // A real server on loopback (MockAgent answers in microtasks and the loop then starves the event loop outright).
    const lists: number[] = [] // when each full list arrived
    const api = await loopbackApi((req, res) => {
      res.setHeader('content-type', 'application/json')
      if (req.url?.includes('watch=1')) {
        res.statusCode = 410
        res.end(JSON.stringify({ kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' }))
      } else {
        lists.push(performance.now())
        res.end(JSON.stringify({ metadata: { resourceVersion: '5' }, items: [] }))
      }
    })
    const controller = new AbortController()
    t.after(async () => {
      controller.abort()
      await api.close()
    })
    void runInformer<Workload>(api.client, '/apis/apps/v1/namespaces/shop/deployments', {}, { relisted: () => undefined, changed: () => undefined }, silent, controller.signal)
    // It keeps listing (a stuck informer fails here)…
    await until(() => lists.length >= 4, 'the informer to list 4 times', 20_000)
    controller.abort()
    // …and waits before each list again: the backoff starts at 200 ms and doubles (200, 400,
    // 800). A list/410 round that itself took 1 s or more skips the wait, so only these hold on a
    // busy machine: every gap at least the first backoff, the three at least 1.4 s together.
    // Load only lengthens gaps.
    const gaps = lists.slice(1, 4).map((at, i) => at - (lists[i] ?? 0))
    const shown = gaps.map((g) => g.toFixed(0)).join(', ')
    for (const gap of gaps) assert.ok(gap >= 195, `a list came ${gap.toFixed(0)} ms after the one before, under the 200 ms backoff (gaps: ${shown} ms)`)
    assert.ok(gaps.reduce((a, b) => a + b, 0) >= 1395, `the backoff did not grow: gaps ${shown} ms, expected at least 200 + 400 + 800`)
  })
})
