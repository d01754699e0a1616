/**
 * Waking a container that has a health check: resolve once the engine says healthy, reject
 * when it exits or is removed meanwhile. Docker's `/events` reports `health_status: healthy`.
 */
import type { Logger } from 'pino'
import { RelightError, isRelightError, toRelightError } from '../../core/errors.js'
import { inspectContainer } from './container-inspect.js'
import { type ContainerApi, type ContainerInspect, type Filters, containerName, hasHealthcheck } from './containers.js'
import type { MobyEvent } from './events.js'

/** RELIGHT_ERR_BACKEND_EXITED for a container that exited (or died) while it was being woken; logged. */
export function assertNotExited(c: ContainerInspect, provider: string, log: Logger): ContainerInspect {
  if (c.State.Status !== 'exited' && c.State.Status !== 'dead') return c
  const name = containerName(c)
  const code = c.State.ExitCode ?? -1
  log.warn({ container: name, exit_code: code, ...(c.State.Error ? { error: c.State.Error } : {}) }, 'container exited while waking')
  throw new RelightError('RELIGHT_ERR_BACKEND_EXITED', `container ${name} exited with code ${code}${c.State.Error ? `: ${c.State.Error}` : ''}`, {
    backend: name,
    provider,
    exitCode: code,
  })
}

/**
 * Wait for the engine's health status to be healthy. The event stream is opened before the
 * state is read, so no transition falls between the two. Bounded by the caller's signal
 * (wake_timeout).
 */
export async function waitHealthy(api: ContainerApi, id: string, signal: AbortSignal, log: Logger): Promise<ContainerInspect> {
  const provider = api.engine.name
  const done = new AbortController()
  const stop = AbortSignal.any([signal, done.signal])
  try {
    const filters: Filters = { type: ['container'], container: [id] }
    const stream = await api.engine.stream<MobyEvent>('/events', { query: { filters }, signal: stop })
    const now = assertNotExited(await inspectContainer(api, id, signal), provider, log)
    if (now.State.Health?.Status === 'healthy' || !hasHealthcheck(now)) return now
    log.debug({ container: containerName(now) }, 'waiting for the health check')
    for await (const event of stream) {
      const action = event.Action ?? ''
      if (action === 'health_status: healthy') return await inspectContainer(api, id, signal)
      if (action === 'die') assertNotExited(await inspectContainer(api, id, signal), provider, log)
      if (action === 'destroy') throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `container ${id} was removed`, { backend: id, provider })
    }
    throw new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', `the ${provider} event stream ended while waiting for a health check`, { backend: id, provider })
  } catch (err) {
    if (signal.aborted && !isRelightError(err, 'RELIGHT_ERR_BACKEND_EXITED')) {
      throw toRelightError(signal.reason ?? err, 'RELIGHT_ERR_ABORTED', { backend: id, provider })
    }
    throw err
  } finally {
    done.abort()
  }
}
