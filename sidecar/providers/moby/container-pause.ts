/**
 * Pause and unpause (cgroup freezer). A refusal (Docker: 409, libpod: 500 "container state
 * improper") is checked against a fresh inspect: already where we wanted it counts as done
 * (someone else paused or started it meanwhile).
 */
import { isRelightError } from '../../core/errors.js'
import { inspectContainer } from './container-inspect.js'
import { type ContainerApi, postContainer } from './containers.js'

async function toggle(api: ContainerApi, id: string, op: 'pause' | 'unpause', signal: AbortSignal): Promise<void> {
  try {
    await postContainer(api, id, op, signal)
  } catch (err) {
    if (!isRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED')) throw err
    const status = (await inspectContainer(api, id, signal)).State?.Status
    if (status !== (op === 'pause' ? 'paused' : 'running')) throw err
  }
}

export function pauseContainer(api: ContainerApi, id: string, signal: AbortSignal): Promise<void> {
  return toggle(api, id, 'pause', signal)
}

export function unpauseContainer(api: ContainerApi, id: string, signal: AbortSignal): Promise<void> {
  return toggle(api, id, 'unpause', signal)
}
