/**
 * One set-up for the Swarm provider tests on recorded Engine answers: a MockAgent that refuses
 * the network, an EngineClient on it and a SwarmProvider with default settings, made fresh before
 * each test and closed after it. Call `recordedSwarm()` inside a describe().
 */
import { afterEach, beforeEach } from 'node:test'
import pino from 'pino'
import { MockAgent } from 'undici'
import { EngineClient } from '../../sidecar/providers/moby/client.js'
import { swarmConfigSchema } from '../../sidecar/providers/swarm/config.js'
import { SwarmProvider } from '../../sidecar/providers/swarm/provider.js'
import type { Service } from '../../sidecar/providers/swarm/services.js'

export const JSON_HEADERS = { headers: { 'content-type': 'application/json' } }

export interface RecordedSwarm {
  agent: MockAgent
  engine: EngineClient
  provider: SwarmProvider
}

export function recordedSwarm(options: { callHistory?: boolean } = {}): RecordedSwarm {
  const swarm = {} as RecordedSwarm
  beforeEach(() => {
    swarm.agent = new MockAgent(options.callHistory ? { enableCallHistory: true } : undefined)
    swarm.agent.disableNetConnect()
    swarm.engine = new EngineClient({ address: '/nonexistent/docker.sock', dispatcher: swarm.agent })
    swarm.provider = new SwarmProvider(swarmConfigSchema.parse({}), pino({ level: 'silent' }), { engine: swarm.engine })
  })
  afterEach(async () => {
    await swarm.provider.close()
    await swarm.engine.close()
    await swarm.agent.close()
  })
  return swarm
}

/** A routed service `svc1` (web.example.com, one replica, a host-mode port) with extra labels. */
export const webService = (labels: Record<string, string>): Service =>
  ({
    ID: 'svc1',
    Version: { Index: 42 },
    UpdatedAt: '2026-12-07T14:25:40.123456789Z',
    Spec: {
      Name: 'web',
      Labels: { 'relight.domain': 'web.example.com', ...labels },
      Mode: { Replicated: { Replicas: 1 } },
      EndpointSpec: { Mode: 'dnsrr', Ports: [{ Protocol: 'tcp', TargetPort: 8080, PublishMode: 'host' }] },
      TaskTemplate: { ContainerSpec: { Image: 'sha256:abc' } },
    },
  }) as unknown as Service
