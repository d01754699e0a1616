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

/** A pass-through proxy in front of a real engine that counts requests and can cut the sidecar off. */
export interface CountingEngineProxy {
  readonly socket: string
  /** "GET /services/{id}"-shaped keys (ids and queries dropped) → count. */
  readonly counts: Map<string, number>
  total(): number
  reset(): void
  /** Drop every connection (event streams break) and refuse new ones until the answer is called. */
  cut(): () => void
  close(): Promise<void>
}

export async function countingEngineProxy(upstreamSocket: string): Promise<CountingEngineProxy> {
  const tmp = tempDir('relight-count-')
  const socket = join(tmp.dir, 'engine.sock')
  const counts = new Map<string, number>()
  let cutOff = false
  const server = createServer((req, res) => {
    if (cutOff) {
      req.socket.destroy()
      return
    }
    const path = (req.url ?? '').split('?')[0] ?? ''
    const key = `${req.method} ${path.replace(/^\/v\d+\.\d+/, '').replace(/^(\/(?:services|tasks|nodes|containers))\/[^/]+/, '$1/{id}')}`
    counts.set(key, (counts.get(key) ?? 0) + 1)
    const up = request({ socketPath: upstreamSocket, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      res.flushHeaders() // an event stream answers its headers long before its first event
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
  return {
    socket,
    counts,
    total: () => [...counts.values()].reduce((a, b) => a + b, 0),
    reset: () => counts.clear(),
    cut: () => {
      cutOff = true
      server.closeAllConnections()
      return () => {
        cutOff = false
      }
    },
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      tmp.remove()
    },
  }
}
