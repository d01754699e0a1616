import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { processConfigSchema } from '../../sidecar/providers/process/config.js'
import { ProcessProvider } from '../../sidecar/providers/process/provider.js'
import { runProviderContract } from '../contract/provider-contract.js'
import { freePort } from '../helpers/net.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))

runProviderContract('process (real child processes)', {
  make: async () => {
    const port = await freePort()
    const provider = new ProcessProvider(
      processConfigSchema.parse({
        apps: [{ name: 'contract', hosts: ['contract.localhost'], command: [process.execPath, APP], env: { PORT: '{{port}}' }, port, stdout: 'null', stderr: 'null', grace_period: '2s' }],
      }),
      pino({ level: 'silent' }),
    )
    return { provider, id: 'contract', cleanup: () => provider.close() }
  },
})
