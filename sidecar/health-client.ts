/**
 * How `relight-sidecar health` asks the running sidecar whether it is healthy: GET
 * /_relight/healthz on the configured `listen` (no token: healthz is open). Usable as a Docker
 * HEALTHCHECK or a Kubernetes exec probe, where an httpGet probe cannot reach a sidecar that
 * listens on 127.0.0.1 or a unix socket.
 */
import { Agent, request } from 'undici'

/** Where a client on this host reaches a sidecar listening on `listen`. */
export interface SidecarEndpoint {
  /** `http://host:port` (`http://localhost` for a unix socket). */
  readonly origin: string
  /** The unix socket path, when listen is `unix:/path`. */
  readonly socketPath?: string
}

/** `listen` as a client address: unix:/path as is; wildcard binds (0.0.0.0, ::, :port) mapped to loopback. */
export function sidecarEndpoint(listen: string): SidecarEndpoint {
  if (listen.startsWith('unix:')) return { origin: 'http://localhost', socketPath: listen.slice('unix:'.length) }
  const hostPort = listen.replace(/^:/, '127.0.0.1:').replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '[::1]:')
  return { origin: `http://${hostPort}` }
}

export interface HealthOutcome {
  readonly exitCode: 0 | 1
  readonly line: string
}

export interface HealthOptions {
  readonly timeoutMs: number
  /** Count a sidecar that answers `degraded` (a provider cannot be listed) as alive. */
  readonly degradedOk?: boolean
  /** Ask again (every 250 ms) until the answer is healthy or timeoutMs has passed: for start-up hooks. */
  readonly wait?: boolean
}

/** `relight-sidecar health`: one line, exit 0 when the sidecar answers healthy, else 1. */
export async function checkHealth(listen: string, options: HealthOptions): Promise<HealthOutcome> {
  if (!options.wait) return askOnce(listen, options)
  const deadline = Date.now() + options.timeoutMs
  for (;;) {
    const left = deadline - Date.now()
    const outcome = await askOnce(listen, { ...options, timeoutMs: Math.max(1, left) })
    if (outcome.exitCode === 0 || Date.now() + 250 >= deadline) {
      return outcome.exitCode === 0 ? outcome : { exitCode: 1, line: `${outcome.line} (still, after waiting ${options.timeoutMs} ms)` }
    }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

async function askOnce(listen: string, options: HealthOptions): Promise<HealthOutcome> {
  const endpoint = sidecarEndpoint(listen)
  const where = endpoint.socketPath ? `unix:${endpoint.socketPath}` : endpoint.origin
  const dispatcher = endpoint.socketPath ? new Agent({ connect: { socketPath: endpoint.socketPath } }) : new Agent()
  const signal = AbortSignal.timeout(options.timeoutMs)
  try {
    const res = await request(`${endpoint.origin}/_relight/healthz`, { signal, dispatcher })
    const body = await res.body.text()
    if (res.statusCode !== 200) return { exitCode: 1, line: `unhealthy: ${where} answered ${res.statusCode}: ${body.slice(0, 200)}` }
    let health: { status?: unknown; backends?: unknown; providers?: Record<string, { ok?: boolean; error?: string }>; access_log?: unknown }
    try {
      health = JSON.parse(body) as typeof health
    } catch {
      return { exitCode: 1, line: `unhealthy: ${where} answered 200 but not with healthz JSON: ${body.slice(0, 200)}` }
    }
    const failing = Object.entries(health.providers ?? {})
      .filter(([, p]) => p.ok === false)
      .map(([id, p]) => `${id}${p.error ? ` (${p.error})` : ''}`)
    const summary = `${health.backends} backend(s), access_log ${health.access_log}`
    if (health.status === 'ok') return { exitCode: 0, line: `healthy: ${where}: ${summary}` }
    if (health.status === 'degraded') {
      const text = `degraded: ${where}: ${summary}; failing: ${failing.join('; ') || 'unknown'}`
      return { exitCode: options.degradedOk ? 0 : 1, line: text }
    }
    return { exitCode: 1, line: `unhealthy: ${where} answered status ${JSON.stringify(health.status)}` }
  } catch (err) {
    if (signal.aborted) return { exitCode: 1, line: `unhealthy: ${where} did not answer within ${options.timeoutMs} ms` }
    const e = err as NodeJS.ErrnoException
    return { exitCode: 1, line: `unreachable: ${where}: ${e.code ?? e.message}${e.code && e.message ? ` (${e.message})` : ''}` }
  } finally {
    await dispatcher.close().catch(() => undefined)
  }
}
