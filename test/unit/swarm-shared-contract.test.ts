/**
 * The shared-engine contract (test/contract/shared-engine-contract.ts) on the in-memory swarm
 * (test/fakes/swarm-engine.ts): two SwarmProvider instances on one FakeSwarm are two sidecars.
 * The same contract runs on the real swarm in test/integration/swarm-shared-contract.test.ts.
 */
import pino from 'pino'
import { swarmConfigSchema } from '../../sidecar/providers/swarm/config.js'
import { SwarmProvider } from '../../sidecar/providers/swarm/provider.js'
import { runSharedEngineContract } from '../contract/shared-engine-contract.js'
import { FakeSwarm } from '../fakes/swarm-engine.js'

runSharedEngineContract('swarm (in-memory engine, two provider instances)', {
  timeout: 10_000,
  make: async () => {
    const swarm = new FakeSwarm()
    swarm.add('web', { 'relight.domain': 'web.example.com' }, 0)
    const make = (identity: string) =>
      new SwarmProvider(swarmConfigSchema.parse({ identity }), pino({ level: 'silent' }), { api: swarm.api, taskPollMs: [1], inspectEveryMs: 0 })
    const a = make('edge-a')
    const b = make('edge-b')
    return {
      a,
      b,
      id: 'web',
      replicas: async () => swarm.services.get('web')?.Spec.Mode?.Replicated?.Replicas ?? 0,
      // The fake cannot cut one sidecar alone: every stream breaks and the next attempts fail for a while.
      cut: async () => {
        swarm.failEvents = 1_000_000
        swarm.cut()
        return async () => {
          swarm.failEvents = 0
        }
      },
      cleanup: async () => {
        await a.close()
        await b.close()
      },
    }
  },
})
