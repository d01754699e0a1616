/**
 * Review of the multi-node providers (kubernetes, swarm): regression tests for the findings.
 * Each test asserts the behaviour the finding asks for, so it FAILS on ae3efc1.
 */
import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it } from 'node:test'
import pino from 'pino'
import { MockAgent } from 'undici'
import { isRelightError } from '../../sidecar/core/errors.js'
import { EngineClient } from '../../sidecar/providers/moby/client.js'
import { swarmConfigSchema } from '../../sidecar/providers/swarm/config.js'
import { SwarmProvider } from '../../sidecar/providers/swarm/provider.js'
import type { Service } from '../../sidecar/providers/swarm/services.js'

const JSON_HEADERS = { headers: { 'content-type': 'application/json' } }
const silent = pino({ level: 'silent' })


describe('review: swarm', () => {
  let agent: MockAgent
  let engine: EngineClient
  let provider: SwarmProvider
  beforeEach(() => {
    agent = new MockAgent()
    agent.disableNetConnect()
    engine = new EngineClient({ address: '/nonexistent/docker.sock', dispatcher: agent })
    provider = new SwarmProvider(swarmConfigSchema.parse({}), silent, { engine })
  })
  afterEach(async () => {
    await provider.close()
    await engine.close()
    await agent.close()
  })
  const service = (labels: Record<string, string>): Service =>
    ({
      ID: 'svc1',
      Version: { Index: 42 },
      Spec: {
        Name: 'web',
        Labels: { 'relight.domain': 'web.example.com', ...labels },
        Mode: { Replicated: { Replicas: 1 } },
        EndpointSpec: { Mode: 'dnsrr', Ports: [{ Protocol: 'tcp', TargetPort: 8080, PublishMode: 'host' }] },
        TaskTemplate: { ContainerSpec: { Image: 'sha256:abc' } },
      },
    }) as unknown as Service

  it('F2: a last_activity far in the future (skewed clock, hand edit) does not keep a service up for ever', async () => {
    // Idle for a day by every real clock; the label says a sidecar saw traffic in 2099.
    agent.get('http://localhost').intercept({ method: 'GET', path: (p) => p.split('?')[0] === '/services/svc1' }).reply(200, service({ 'relight.last_activity': '2099-01-01T00:00:00.000Z' }), JSON_HEADERS)
    agent.get('http://localhost').intercept({ method: 'POST', path: (p) => p.split('?')[0] === '/services/svc1/update' }).reply(200, {}, JSON_HEADERS)
    await provider.sleep('svc1', 'scale', AbortSignal.timeout(5000), { idleTimeout: 60_000 }).catch((e: unknown) => {
      assert.fail(`refused: ${isRelightError(e) ? e.message : String(e)}`)
    })
  })
})
