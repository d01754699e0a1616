import pino from 'pino'
import { slicerConfigSchema } from '../../sidecar/providers/slicer/config.js'
import { SlicerProvider } from '../../sidecar/providers/slicer/provider.js'
import { runProviderContract } from '../contract/provider-contract.js'
import { SlicerSimulator } from '../fakes/slicer/simulator.js'
import { freePort, tempDir } from '../helpers/net.js'

// Over TCP with a token, against a persistent VM (so stop/relaunch is exercised too).
runProviderContract('slicer (simulator over TCP, persistent VM)', {
  make: async () => {
    const sim = await SlicerSimulator.start({ token: 'contract-token', appPort: await freePort() })
    const vm = await sim.createNode('apps', { tags: ['contract', 'contract.localhost'], persistent: true })
    const provider = new SlicerProvider(
      slicerConfigSchema.parse({ url: sim.url, token: 'contract-token', host_group: 'apps', app_port: vm.port }),
      pino({ level: 'silent' }),
    )
    return {
      provider,
      id: vm.hostname,
      cleanup: async () => {
        await provider.close()
        await sim.close()
      },
    }
  },
})

// Over a unix socket without a token; a non-persistent VM has no stop mode.
runProviderContract('slicer (simulator over a unix socket, pause and suspend)', {
  modes: ['pause', 'suspend'],
  make: async () => {
    const tmp = tempDir('relight-slicer-')
    const sim = await SlicerSimulator.start({ listen: `${tmp.dir}/slicer.sock`, appPort: await freePort() })
    const vm = await sim.createNode('apps', { tags: ['contract2.localhost'] })
    const provider = new SlicerProvider(slicerConfigSchema.parse({ url: sim.url, app_port: vm.port }), pino({ level: 'silent' }))
    return {
      provider,
      id: vm.hostname,
      cleanup: async () => {
        await provider.close()
        await sim.close()
        tmp.remove()
      },
    }
  },
})
