/**
 * One engine answer, one error code, whichever provider met it (providers/kit/http-errors.ts):
 * the Moby kit's client (Docker, Podman, Swarm), Slicer's client and the Kubernetes client ask
 * the same loopback server, which answers each status in turn, and the client behind Caddy gets
 * the same HTTP answer. An API server's 502/503/504/429 used to reach the client as 502
 * RELIGHT_ERR_PROVIDER_FAILED where Docker and Slicer gave 503 RELIGHT_ERR_PROVIDER_UNAVAILABLE.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import Fastify from 'fastify'
import { type ErrorCode, isRelightError } from '../../sidecar/core/errors.js'
import { KubeClient } from '../../sidecar/providers/kubernetes/client.js'
import { EngineClient } from '../../sidecar/providers/moby/client.js'
import { SlicerClient } from '../../sidecar/providers/slicer/client.js'
import { sendError } from '../../sidecar/server/responses.js'

describe('engine answers map to one error code on every provider', () => {
  let answer = 200
  const server = createServer((req, res) => {
    req.resume()
    res.writeHead(answer, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ kind: 'Status', message: `answered ${answer}`, reason: 'Testing', code: answer }))
  })
  let moby: EngineClient
  let slicer: SlicerClient
  let kube: KubeClient
  const app = Fastify({ logger: false })
  let failWith: unknown
  app.get('/', (req, reply) => sendError(req, reply, failWith))

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    moby = new EngineClient({ address: origin.replace('http:', 'tcp:'), name: 'docker' })
    slicer = new SlicerClient(origin, undefined)
    kube = new KubeClient({ server: origin, token: 't', namespace: 'shop', source: 'test' })
  })
  after(async () => {
    await Promise.all([moby?.close(), slicer?.close(), kube?.close(), app.close()])
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  /** The code each client's failure carries for one answer of the engine. */
  async function codes(status: number): Promise<Record<string, ErrorCode | 'no error'>> {
    answer = status
    const signal = AbortSignal.timeout(10_000)
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => 'no error' as const,
        (err: unknown) => {
          assert.ok(isRelightError(err), `a RelightError, got ${String(err)}`)
          failWith = err
          return err.code
        },
      )
    return {
      moby: await codeOf(moby.json('GET', '/containers/json', { signal })),
      slicer: await codeOf(slicer.listNodes(signal)),
      kubernetes: await codeOf(kube.json('GET', '/api/v1/namespaces/shop/pods', { signal })),
    }
  }

  it('502, 503, 504 and 429 are RELIGHT_ERR_PROVIDER_UNAVAILABLE everywhere, and Caddy gets 503', async () => {
    for (const status of [502, 503, 504, 429]) {
      const got = await codes(status)
      assert.deepEqual(got, { moby: 'RELIGHT_ERR_PROVIDER_UNAVAILABLE', slicer: 'RELIGHT_ERR_PROVIDER_UNAVAILABLE', kubernetes: 'RELIGHT_ERR_PROVIDER_UNAVAILABLE' }, `HTTP ${status}`)
      const res = await app.inject({ method: 'GET', url: '/', headers: { accept: 'application/json' } })
      assert.equal(res.statusCode, 503, `HTTP ${status} from the Kubernetes API server`)
      assert.equal(res.json().code, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')
    }
  })

  it('401 and 403 are RELIGHT_ERR_PROVIDER_AUTH, 409 and 500 RELIGHT_ERR_PROVIDER_FAILED, everywhere', async () => {
    for (const [status, code] of [[401, 'RELIGHT_ERR_PROVIDER_AUTH'], [403, 'RELIGHT_ERR_PROVIDER_AUTH'], [409, 'RELIGHT_ERR_PROVIDER_FAILED'], [500, 'RELIGHT_ERR_PROVIDER_FAILED']] as const) {
      assert.deepEqual(await codes(status), { moby: code, slicer: code, kubernetes: code }, `HTTP ${status}`)
    }
  })
})
