import { createServer, type Server } from 'node:http'
import { after, before } from 'node:test'

/**
 * A loopback HTTP server answering "ok" for the current suite (or file): started in `before`,
 * closed in `after`. `address` is its `127.0.0.1:port` once the suite runs.
 */
export function okUpstream(): { readonly address: string } {
  const state = { address: '' }
  let server: Server | undefined
  before(async () => {
    const s = createServer((_req, res) => res.end('ok'))
    server = s
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    const a = s.address()
    state.address = `127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`
  })
  after(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())))
  return state
}
