/**
 * A read-only proxy in front of a real Docker engine, like the socket proxies people put
 * between a sidecar and dockerd (GET allowed, writes answered 403). The engine behind it is the
 * real one: only the writes are refused, as such a proxy refuses them.
 */
import { createServer, request } from 'node:http'
import { join } from 'node:path'
import { tempDir } from './net.js'

export interface EngineProxy {
  /** unix socket path to give the provider. */
  readonly socket: string
  /** Write requests refused so far. */
  refused: number
  close(): Promise<void>
}

export async function readOnlyEngineProxy(upstreamSocket: string): Promise<EngineProxy> {
  const tmp = tempDir('relight-ro-')
  const socket = join(tmp.dir, 'engine.sock')
  const proxy: EngineProxy = { socket, refused: 0, close: async () => undefined }
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      proxy.refused++
      req.resume()
      res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'write requests are forbidden by this read-only socket proxy' }))
      return
    }
    const up = request({ socketPath: upstreamSocket, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    up.on('error', () => res.destroy())
    res.on('close', () => up.destroy())
    req.pipe(up)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(socket, resolve)
  })
  proxy.close = async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    tmp.remove()
  }
  return proxy
}
