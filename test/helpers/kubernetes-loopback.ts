/**
 * A loopback HTTP server playing the Kubernetes API server, and a KubeClient on it: for the
 * tests that need real sockets (stream ends, resets, stalls, backoff between requests), where
 * MockAgent answers in microtasks. `handler` answers every request; `close()` in an after hook.
 */
import { createServer, type RequestListener } from 'node:http'
import type { AddressInfo } from 'node:net'
import { KubeClient, type KubeClientOptions } from '../../sidecar/providers/kubernetes/client.js'

export interface LoopbackApi {
  readonly client: KubeClient
  /** Closes the client, then every connection and the server. */
  close(): Promise<void>
}

export async function loopbackApi(handler: RequestListener, options: KubeClientOptions = {}): Promise<LoopbackApi> {
  const server = createServer(handler)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address() as AddressInfo
  const client = new KubeClient({ server: `http://127.0.0.1:${port}`, token: 't', namespace: 'shop', source: 'test' }, options)
  return {
    client,
    close: async () => {
      await client.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
