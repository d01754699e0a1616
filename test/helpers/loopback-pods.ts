/**
 * Local HTTP servers on distinct loopback addresses (127.0.0.2, 127.0.0.3, …: Linux routes all
 * of 127.0.0.0/8 to lo) standing in for the pods of a stateful app. Each behaves like a Doors
 * pod: it knows its token (its IP encrypted with the shared secret), sets the sticky cookie on
 * pages, and answers `pod=NAME ip=IP path=PATH` on every path.
 */
import { createServer, request, type Server } from 'node:http'
import { TokenCipher } from '../../sidecar/routing/stateful/token.js'
import { freePort } from './net.js'

export interface Pod {
  readonly name: string
  readonly ip: string
  readonly token: string
  close(): Promise<void>
}

function listen(server: Server, ip: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, ip, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

/** Start one pod per `[name, ip]`, all on one port (the upstream's `port`). */
export async function startPods(pods: [string, string][], secret: string, cookieName = 'upstream'): Promise<{ pods: Pod[]; port: number; close(): Promise<void> }> {
  const cipher = new TokenCipher(secret)
  for (let attempt = 0; ; attempt++) {
    const port = await freePort(pods[0]?.[1])
    const started: Pod[] = []
    try {
      for (const [name, ip] of pods) {
        const token = cipher.encode(ip)
        const server = createServer((req, res) => {
          res.setHeader('set-cookie', `${cookieName}=${token}; Path=/; HttpOnly`)
          res.end(`pod=${name} ip=${ip} path=${req.url}\n`)
        })
        await listen(server, ip, port)
        started.push({
          name,
          ip,
          token,
          close: () =>
            new Promise<void>((resolve) => {
              server.closeAllConnections()
              server.close(() => resolve())
            }),
        })
      }
      return { pods: started, port, close: async () => void (await Promise.all(started.map((p) => p.close()))) }
    } catch (err) {
      await Promise.all(started.map((p) => p.close()))
      if (attempt >= 5 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
    }
  }
}

export interface Answer {
  readonly status: number
  readonly body: string
  readonly headers: Record<string, string | string[] | undefined>
}

/** GET through Caddy with a chosen Host and Cookie (fetch cannot set Host). */
export function get(url: string, path: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, url), { headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** The pod name in an answer body (`pod=NAME …`), or the status when a pod did not answer. */
export function podOf(answer: Answer): string {
  const m = /^pod=(\S+)/.exec(answer.body)
  return m ? (m[1] as string) : `status ${answer.status}`
}
