/**
 * Review of the multi-node providers (kubernetes, swarm): regression tests for the findings.
 * Each test asserts the behaviour the finding asks for, so it FAILS on ae3efc1.
 */
import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it } from 'node:test'
import pino from 'pino'
import { MockAgent } from 'undici'
import { EngineClient } from '../../sidecar/providers/moby/client.js'
import { swarmConfigSchema } from '../../sidecar/providers/swarm/config.js'
import { SwarmProvider } from '../../sidecar/providers/swarm/provider.js'
import type { Service } from '../../sidecar/providers/swarm/services.js'

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

  it('F5: label values that change all the time do not grow the provider\'s memory without bound', () => {
    for (let i = 0; i < 10_000; i++) provider.toBackend(service({ 'relight.replicas': `x${i}` }), [])
    const warned = (provider as unknown as { warned: Set<string> }).warned
    assert.ok(warned.size < 1000, `warn-once keys kept: ${warned.size}`)
  })
})
