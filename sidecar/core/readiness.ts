import { connect } from 'node:net'
import { request } from 'undici'
import type { Readiness } from './provider.js'
import { delay, withDeadline } from './timers.js'

/**
 * First retry after a refused connect, growing ×1.5 to the cap: ms-scale, never seconds. The cap
 * bounds how late a wake notices the app listening (half of it on average); a refused loopback
 * connect every 20 ms costs nothing measurable (`npm run bench -- --only wake`).
 */
const FIRST_DELAY_MS = 5
const MAX_DELAY_MS = 20
const ATTEMPT_TIMEOUT_MS = 2000

export function splitHostPort(upstream: string): { host: string; port: number } {
  const colon = upstream.lastIndexOf(':')
  let host = upstream.slice(0, colon)
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1)
  return { host, port: Number(upstream.slice(colon + 1)) }
}


function tcpOnce(upstream: string, signal: AbortSignal): Promise<boolean> {
  const { host, port } = splitHostPort(upstream)
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: ATTEMPT_TIMEOUT_MS })
    const done = (ok: boolean) => {
      signal.removeEventListener('abort', onAbort)
      socket.destroy()
      resolve(ok)
    }
    const onAbort = () => done(false)
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
    socket.once('timeout', () => done(false))
  })
}

async function httpOnce(upstream: string, path: string, signal: AbortSignal): Promise<boolean> {
  const attempt = withDeadline(signal, ATTEMPT_TIMEOUT_MS)
  try {
    const res = await request(`http://${upstream}${path}`, {
      method: 'GET',
      signal: attempt.signal,
      headers: { 'user-agent': 'relight-sidecar readiness' },
    })
    await res.body.dump()
    return res.statusCode < 500
  } catch {
    return false
  } finally {
    attempt.clear()
  }
}

/**
 * After a probe succeeded: is what answered the backend's own listener? (Provider.ownsListener:
 * false means not known yet, a throw means another program answered.)
 */
export type ListenerCheck = (upstream: string, signal: AbortSignal) => boolean | Promise<boolean>

/**
 * Resolve once `upstream` accepts connections (tcp) or answers below 500 (http:/path), and
 * `owns` (when given) confirms the listener is the backend's. Retries within milliseconds of a
 * refusal; rejects with the signal's reason when it aborts, or with what `owns` throws.
 */
export async function waitReady(upstream: string, readiness: Readiness, signal: AbortSignal, owns?: ListenerCheck): Promise<void> {
  const path = readiness === 'tcp' ? undefined : readiness.slice('http:'.length)
  let wait = FIRST_DELAY_MS
  for (;;) {
    if (signal.aborted) throw signal.reason
    const ok = path === undefined ? await tcpOnce(upstream, signal) : await httpOnce(upstream, path, signal)
    if (ok && (owns === undefined || (await owns(upstream, signal)))) {
      if (signal.aborted) throw signal.reason // aborted while the listener check read /proc
      return
    }
    await delay(wait, signal)
    wait = Math.min(MAX_DELAY_MS, Math.ceil(wait * 1.5))
  }
}

/** Resolve with the first ready upstream; the rest are reported through `onReady` as they come up. */
export function waitAnyReady(
  upstreams: readonly string[],
  readiness: Readiness,
  signal: AbortSignal,
  onReady: (upstream: string) => void,
  owns?: ListenerCheck,
): Promise<void> {
  if (upstreams.length === 0) return Promise.reject(new Error('backend has no upstream address'))
  return Promise.any(
    upstreams.map((u) =>
      waitReady(u, readiness, signal, owns).then(() => {
        onReady(u)
      }),
    ),
  ).catch((err: unknown) => {
    throw err instanceof AggregateError ? (signal.reason ?? err.errors[0]) : err
  })
}
