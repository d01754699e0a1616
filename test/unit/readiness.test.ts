/** core/readiness.ts waitReady: the probe, then the listener check, and the wake's abort. */
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { describe, it } from 'node:test'
import { waitReady } from '../../sidecar/core/readiness.js'

describe('waitReady', () => {
  it('a wake aborted while the listener check ran is not reported ready: it rejects with the abort reason', async (t) => {
    const server = createServer((s) => s.destroy())
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    t.after(() => server.close())
    const upstream = `127.0.0.1:${(server.address() as { port: number }).port}`
    const wake = new AbortController()
    const reason = new Error('wake aborted during the /proc read')
    let checked = 0
    // owns says yes, but only after the wake was aborted (as an asynchronous /proc read would)
    const owns = async (u: string, signal: AbortSignal) => {
      checked++
      assert.equal(u, upstream)
      assert.equal(signal, wake.signal, 'the wake\'s signal is passed on')
      await new Promise((r) => setImmediate(r))
      wake.abort(reason)
      return true
    }
    await assert.rejects(waitReady(upstream, 'tcp', wake.signal, owns), (err) => err === reason)
    assert.equal(checked, 1)
    // not aborted: ready once owns says yes
    await waitReady(upstream, 'tcp', AbortSignal.timeout(10_000), async () => true)
  })
})
