/**
 * `readiness: tcp` trusts any listener; `readiness: http:/path` catches a backend that accepts
 * connections but never answers. Measured through real Caddy against such a backend; the README
 * ("readiness") quotes what this test prints.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { freePort } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const SILENT = fileURLToPath(new URL('../../../test/fixtures/silent-app.mjs', import.meta.url))
const WAKE_TIMEOUT_MS = 2000
/** How long the client waits before it calls the request hung. */
const CLIENT_PATIENCE_MS = 5000

describe('readiness against a backend that accepts but never answers, through Caddy', { skip: caddySkip() }, () => {
  let sc: TestSidecar
  let caddy: RunningCaddy

  before(async () => {
    const app = async (name: string, readiness: string) =>
      `      - { name: ${name}, hosts: [${name}.localhost], command: [${process.execPath}, ${SILENT}], env: { PORT: "{{port}}" }, port: ${await freePort()}, readiness: "${readiness}", stdout: "null" }\n`
    sc = await startTestSidecar(`defaults: { wake_timeout: ${WAKE_TIMEOUT_MS}ms }\nproviders:\n  process:\n    apps:\n${await app('tcp', 'tcp')}${await app('http', 'http:/health')}`)
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
    await until(() => sc.sidecar.registry.countInflight, 'Caddy to connect its access log')
  })
  after(async () => {
    await caddy?.close()
    await sc?.close()
  })

  async function timed(host: string): Promise<{ status: number | 'no answer'; code?: string; ms: number }> {
    const t0 = performance.now()
    try {
      const res = await request(caddy.url, { headers: { host }, signal: AbortSignal.timeout(CLIENT_PATIENCE_MS) })
      await res.body.dump()
      return { status: res.statusCode, code: res.headers['x-relight-reply'] as string | undefined, ms: Math.round(performance.now() - t0) }
    } catch (err) {
      if ((err as Error).name !== 'TimeoutError') throw err
      return { status: 'no answer', ms: Math.round(performance.now() - t0) }
    }
  }

  it('tcp: the app is "ready" as soon as it listens, and the request hangs', async (t) => {
    const r = await timed('tcp.localhost')
    t.diagnostic(`readiness tcp: ${r.status} after ${r.ms} ms (client gave up at ${CLIENT_PATIENCE_MS} ms)`)
    assert.equal(r.status, 'no answer')
    assert.equal(sc.sidecar.registry.get('process:tcp')?.phase, 'running', 'the sidecar considers it awake')
  })

  it('http:/health: the wake fails with 504 RELIGHT_ERR_WAKE_TIMEOUT after wake_timeout', async (t) => {
    const r = await timed('http.localhost')
    t.diagnostic(`readiness http:/health: ${r.status} ${r.code ?? ''} after ${r.ms} ms (wake_timeout ${WAKE_TIMEOUT_MS} ms)`)
    assert.equal(r.status, 504)
    assert.equal(r.code, 'RELIGHT_ERR_WAKE_TIMEOUT')
    assert.ok(r.ms >= WAKE_TIMEOUT_MS - 50 && r.ms < CLIENT_PATIENCE_MS, `${r.ms} ms`)
  })
})
