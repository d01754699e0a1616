import { after, before } from 'node:test'
import pino from 'pino'
import { dockerConfigSchema } from '../../sidecar/providers/docker/config.js'
import { DockerProvider } from '../../sidecar/providers/docker/provider.js'
import { runProviderContract } from '../contract/provider-contract.js'
import { DOCKER_SOCKET, TestDocker, dockerSkip } from '../helpers/docker.js'
import { freePort } from '../helpers/net.js'

const skip = await dockerSkip()

if (skip === undefined) {
  const docker = new TestDocker()
  before(async () => {
    await docker.importImage()
  })
  after(async () => {
    await docker.cleanup()
  })

  runProviderContract('docker (real dockerd)', {
    timeout: 60_000,
    make: async () => {
      const port = await freePort()
      // A unique label prefix: other test files' containers are invisible to this provider.
      const id = await docker.container({ cmd: docker.httpd(port), labels: { [`${docker.run}.domain`]: 'contract.localhost', [`${docker.run}.port`]: String(port) } })
      const provider = new DockerProvider(dockerConfigSchema.parse({ socket: DOCKER_SOCKET, label_prefix: docker.run, stop_timeout: '5s' }), pino({ level: 'silent' }))
      return { provider, id, cleanup: () => provider.close() }
    },
  })
}
