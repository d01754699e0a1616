/** One-shot HTTP requests from the driver: checks before measuring, and time to first byte. */
import { type IncomingHttpHeaders, request } from 'node:http'

export interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: string
  /** ms from sending to the response head (first byte). */
  ttfb: number
  /** ms from sending to the end of the body. */
  total: number
  /** performance.now() when the response head arrived. */
  firstByteAt: number
}

export interface Target {
  readonly host?: string
  readonly port?: number
  readonly socketPath?: string
}

export function get(target: Target, path: string, hostHeader: string, options: { method?: string; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    let ttfb = 0
    let firstByteAt = 0
    const req = request(
      {
        ...(target.socketPath ? { socketPath: target.socketPath } : { host: target.host ?? '127.0.0.1', port: target.port }),
        path,
        method: options.method ?? 'GET',
        headers: { host: hostHeader, connection: 'close', ...options.headers },
        agent: false,
        timeout: options.timeoutMs ?? 30_000,
      },
      (res) => {
        firstByteAt = performance.now()
        ttfb = firstByteAt - t0
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ttfb, total: performance.now() - t0, firstByteAt }))
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`timeout: GET ${path} Host ${hostHeader}`)))
    req.on('error', reject)
    req.end()
  })
}

/** Throw unless the answer has this status (and, when given, a body containing `text`). */
export function expectAnswer(what: string, answer: Answer, status: number, text?: string): void {
  if (answer.status !== status || (text !== undefined && !answer.body.includes(text))) {
    throw new Error(`${what}: expected ${status}${text ? ` with "${text.trim()}"` : ''}, got ${answer.status}: ${answer.body.slice(0, 300)}`)
  }
}
