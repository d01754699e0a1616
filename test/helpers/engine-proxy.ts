/**
 * Proxies in front of a real engine (the Docker socket, the Kubernetes API server).
 *
 * `readOnlyEngineProxy`: like the socket proxies people put between a sidecar and dockerd (GET
 * allowed, writes answered 403). The engine behind it is the real one.
 *
 * `engineProxy`: a counting, pausable proxy for the contention suite (issue 21) and the Swarm
 * shared-engine contract (test/integration/swarm-shared-contract.test.ts): it re-issues each
 * request (the bearer token passes through) and pipes the answer, watches and event streams
 * included; it counts requests by class, can freeze (hold new requests, stop piping open streams)
 * or cut (destroy every connection, refuse new ones) the engine for the sidecar behind it, and
 * delay chosen requests. For Kubernetes it serves TLS with its own test CA minted back-dated by an
 * hour (a sidecar whose clock is 120 s behind would see a CA minted seconds ago as not yet valid).
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { type IncomingMessage, type ServerResponse, createServer, request } from 'node:http'
import { createServer as createTlsServer, request as tlsRequest } from 'node:https'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import { tempDir } from './net.js'

export interface ReadOnlyEngineProxy {
  /** unix socket path to give the provider. */
  readonly socket: string
  /** Write requests refused so far. */
  refused: number
  close(): Promise<void>
}

export async function readOnlyEngineProxy(upstreamSocket: string): Promise<ReadOnlyEngineProxy> {
  const tmp = tempDir('relight-ro-')
  const socket = join(tmp.dir, 'engine.sock')
  const proxy: ReadOnlyEngineProxy = { socket, refused: 0, close: async () => undefined }
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

export type RequestClass = 'list' | 'get' | 'watch' | 'write' | 'events' | 'tasks'

export interface ProxiedRequest {
  /** Date.now() when the request reached the proxy. */
  readonly at: number
  readonly method: string
  readonly path: string
  readonly class: RequestClass
}

export interface EngineProxy {
  /** Docker: the unix socket to give the provider. */
  readonly socket?: string
  /** Kubernetes: `https://127.0.0.1:PORT`. */
  readonly url?: string
  /** Kubernetes: the PEM file of the proxy's CA (back-dated). */
  readonly ca?: string
  /** Every request so far (`reset()` clears). */
  readonly log: ProxiedRequest[]
  counts(since?: number, until?: number): Record<RequestClass, number> & { total: number }
  reset(): void
  /** freeze: hold new requests and stop piping open answers; cut: destroy every connection and refuse new ones. */
  pause(mode: 'freeze' | 'cut'): void
  resume(): void
  /**
   * Hold requests matching `match` for `ms` before passing them on (undefined: no delay). `match`
   * also gets the request body; `ms` may be a function, called once per matching request as it
   * arrives (a per-request delay, and the moment the test learns a request is being held).
   */
  delay(match: DelayMatch | undefined, ms?: number | DelayMs): void
  close(): Promise<void>
}

/** Which requests `delay` holds (body: the request's body as received). */
export type DelayMatch = (method: string, path: string, body: Buffer) => boolean
/** How long `delay` holds this one request (ms). */
export type DelayMs = (method: string, path: string, body: Buffer) => number

export type Upstream = { readonly socket: string } | { readonly url: string; readonly ca: string }

/** Which kind of engine request this is (Docker Engine API or Kubernetes API paths). */
export function classify(method: string, path: string): RequestClass {
  if (method !== 'GET' && method !== 'HEAD') return 'write'
  const [p = '', q = ''] = path.split('?')
  if (/(^|&)watch=(true|1)/.test(q) || p.includes('/watch/')) return 'watch'
  if (/\/events$/.test(p)) return 'events'
  if (/\/tasks$/.test(p)) return 'tasks'
  // Docker: /services/{id}; Kubernetes: …/{resource}/{name} (a name after the plural resource)
  const parts = p.split('/').filter(Boolean)
  if (parts.some((x) => x === 'services' || x === 'containers') && !/\/(services|containers)(\/json)?$/.test(p.replace(/^\/v[\d.]+/, ''))) return 'get'
  if (parts[0] === 'api' || parts[0] === 'apis') {
    const ns = parts.indexOf('namespaces')
    const rest = ns >= 0 ? parts.slice(ns + 2) : parts.slice(parts[0] === 'api' ? 2 : 3)
    return rest.length >= 2 ? 'get' : 'list'
  }
  return 'list'
}

/** A back-dated CA and a certificate for 127.0.0.1 signed by it, in `dir` (needs `faketime` and `openssl`). */
function backDatedCertificate(dir: string): { key: string; cert: string; ca: string } {
  const f = (n: string) => join(dir, n)
  const back = (args: string[]) => execFileSync('faketime', ['-f', '-1h', 'openssl', ...args], { stdio: 'ignore' })
  back(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=relight engine proxy test CA'])
  back(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('proxy.key'), '-out', f('proxy.csr'), '-subj', '/CN=127.0.0.1'])
  writeFileSync(f('ext'), 'subjectAltName=IP:127.0.0.1\n')
  back(['x509', '-req', '-in', f('proxy.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('ext'), '-out', f('proxy.pem')])
  return { key: f('proxy.key'), cert: f('proxy.pem'), ca: f('ca.pem') }
}

/** A counting, pausable proxy in front of `upstream`; listens on a unix socket (Docker) or TLS on 127.0.0.1 (Kubernetes). */
export async function engineProxy(upstream: Upstream): Promise<EngineProxy> {
  const tmp = tempDir('relight-ep-')
  const log: ProxiedRequest[] = []
  let mode: 'run' | 'freeze' | 'cut' = 'run'
  let held: { go: () => void; res: ServerResponse }[] = []
  let delayed: { match: DelayMatch; ms: number | DelayMs } | undefined
  const sockets = new Set<Socket>()
  const answers = new Set<{ answer: IncomingMessage; res: ServerResponse }>()
  const upstreamCa = 'url' in upstream ? readFileSync(upstream.ca) : undefined

  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    if (mode === 'cut') {
      res.destroy()
      return
    }
    const headers = { ...req.headers }
    const options = { method: req.method, path: req.url, headers }
    const onAnswer = (answer: IncomingMessage) => {
      if (mode === 'cut') {
        answer.destroy()
        res.destroy()
        return
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      // a watch or event stream answers its headers long before its first event: pass them on now
      res.flushHeaders()
      const entry = { answer, res }
      answers.add(entry)
      answer.on('close', () => answers.delete(entry))
      if (mode === 'run') answer.pipe(res)
      else answer.pause()
    }
    const up =
      'socket' in upstream
        ? request({ ...options, socketPath: upstream.socket }, onAnswer)
        : tlsRequest(new URL(req.url ?? '/', upstream.url), { ...options, ca: upstreamCa, headers: { ...headers, host: new URL(upstream.url).host } }, onAnswer)
    up.on('error', () => res.destroy())
    res.on('close', () => up.destroy())
    up.end(body)
  }

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const method = req.method ?? 'GET'
      const path = req.url ?? '/'
      log.push({ at: Date.now(), method, path, class: classify(method, path) })
      const go = () => {
        const d = delayed
        const body = Buffer.concat(chunks)
        if (d && d.match(method, path, body)) setTimeout(() => forward(req, res, body), typeof d.ms === 'function' ? d.ms(method, path, body) : d.ms)
        else forward(req, res, body)
      }
      if (mode === 'freeze') held.push({ go, res })
      else if (mode === 'cut') res.destroy()
      else go()
    })
  }

  const tls = 'url' in upstream ? backDatedCertificate(tmp.dir) : undefined
  const server = tls ? createTlsServer({ key: readFileSync(tls.key), cert: readFileSync(tls.cert) }, handle) : createServer(handle)
  server.on(tls ? 'secureConnection' : 'connection', (s: Socket) => {
    if (mode === 'cut') {
      s.destroy()
      return
    }
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  // keep-alive connections stay for the whole run: no idle timeout on the proxy's side
  server.keepAliveTimeout = 0
  server.requestTimeout = 0
  server.headersTimeout = 0
  const socket = join(tmp.dir, 'engine.sock')
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    if (tls) server.listen(0, '127.0.0.1', resolve)
    else server.listen(socket, resolve)
  })
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0

  const zero = (): Record<RequestClass, number> & { total: number } => ({ list: 0, get: 0, watch: 0, write: 0, events: 0, tasks: 0, total: 0 })
  return {
    ...(tls ? { url: `https://127.0.0.1:${port}`, ca: tls.ca } : { socket }),
    log,
    counts: (since = 0, until = Number.POSITIVE_INFINITY) => {
      const c = zero()
      for (const r of log) {
        if (r.at < since || r.at > until) continue
        c[r.class]++
        c.total++
      }
      return c
    },
    reset: () => {
      log.length = 0
    },
    pause: (how) => {
      mode = how
      if (how === 'freeze') {
        for (const { answer, res } of answers) {
          answer.unpipe(res)
          answer.pause()
        }
      } else {
        for (const { answer, res } of answers) {
          answer.destroy()
          res.destroy()
        }
        for (const s of sockets) s.destroy()
        for (const h of held) h.res.destroy()
        held = []
      }
    },
    resume: () => {
      const was = mode
      mode = 'run'
      if (was === 'freeze') {
        for (const { answer, res } of answers) answer.pipe(res)
        const waiting = held
        held = []
        for (const h of waiting) h.go()
      }
    },
    delay: (match, ms = 0) => {
      delayed = match ? { match, ms } : undefined
    },
    close: async () => {
      mode = 'cut'
      for (const { answer } of answers) answer.destroy()
      for (const s of sockets) s.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      tmp.remove()
    },
  }
}
