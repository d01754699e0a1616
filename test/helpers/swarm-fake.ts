/**
 * SwarmProvider instances ("sidecars") over one in-memory FakeSwarm (test/fakes/swarm-engine.ts),
 * with a scripted monotonic clock, fast task polls, and the view started; closed after each test.
 */
import { afterEach } from 'node:test'
import pino from 'pino'
import type { ProviderEvent } from '../../sidecar/core/provider.js'
import { swarmConfigSchema } from '../../sidecar/providers/swarm/config.js'
import { SwarmProvider } from '../../sidecar/providers/swarm/provider.js'
import { FakeSwarm } from '../fakes/swarm-engine.js'

export interface FakeSidecar {
  readonly provider: SwarmProvider
  readonly events: ProviderEvent[]
  /** The scripted clock (ms). */
  clock: { now: number }
}

export function fakeSwarmSetup(): { swarm: () => FakeSwarm; sidecar: (options?: { identity?: string; start?: boolean; config?: object; inspectEveryMs?: number }) => Promise<FakeSidecar> } {
  let swarm: FakeSwarm | undefined
  const made: SwarmProvider[] = []
  afterEach(async () => {
    for (const p of made.splice(0)) await p.close()
    swarm = undefined
  })
  const get = () => (swarm ??= new FakeSwarm())
  return {
    swarm: get,
    sidecar: async (options = {}) => {
      const clock = { now: 1_000_000 }
      const provider = new SwarmProvider(swarmConfigSchema.parse({ identity: options.identity ?? 'edge-1', ...(options.config ?? {}) }), pino({ level: 'silent' }), {
        api: get().api,
        now: () => clock.now,
        taskPollMs: [1],
        inspectEveryMs: options.inspectEveryMs ?? 0,
      })
      made.push(provider)
      const events: ProviderEvent[] = []
      if (options.start !== false) {
        provider.watch((e) => events.push(e), AbortSignal.timeout(60_000))
        await until(() => provider.view.live)
      }
      return { provider, events, clock }
    },
  }
}

/** Resolve once `cond()` holds (polls every 2 ms; fails after `ms`, 3 s unless told). */
export async function until(cond: () => boolean, what = 'condition', ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 2))
  }
}
