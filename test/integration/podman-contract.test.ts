/**
 * The shared provider contract against real Podman (podman system service + runc). Checkpoint
 * mode runs only where CRIU works; elsewhere it is skipped with the reason `criu check` gives.
 */
import { it } from 'node:test'
import pino from 'pino'
import type { SleepMode } from '../../sidecar/core/provider.js'
import { podmanConfigSchema } from '../../sidecar/providers/podman/config.js'
import { PodmanProvider, probeCriu } from '../../sidecar/providers/podman/provider.js'
import { runProviderContract } from '../contract/provider-contract.js'
import { podmanSkip, startPodman } from '../helpers/podman.js'

const skip = podmanSkip()
const criu = skip ? undefined : await probeCriu(AbortSignal.timeout(20_000))
const modes: SleepMode[] = criu?.ok ? ['checkpoint', 'pause', 'stop'] : ['pause', 'stop']

if (skip) {
  it('provider contract: podman', { skip }, () => undefined)
} else {
  if (!criu?.ok) it('provider contract: podman, checkpoint mode', { skip: `CRIU cannot run on this host (${criu?.detail}); checkpoint is covered by recorded libpod answers and the real fallback test` }, () => undefined)
  runProviderContract('podman (real podman system service, runc)', {
    modes,
    timeout: 60_000,
    make: async () => {
      const podman = await startPodman()
      try {
        const c = await podman.container({ hosts: 'contract.localhost,www.contract.localhost' })
        const provider = new PodmanProvider(
          podmanConfigSchema.parse({ socket: podman.socket, label_prefix: podman.prefix }),
          pino({ level: process.env.RELIGHT_TEST_LOG ?? 'silent' }),
          { defaults: { app_port: 8080, sleep: 'stop', fallback_sleep: 'pause' } },
        )
        return {
          provider,
          id: c.id,
          cleanup: async () => {
            await provider.close()
            await podman.cleanup()
          },
        }
      } catch (err) {
        await podman.cleanup()
        throw err
      }
    },
  })
}
