/**
 * Wake one container from whatever state it is in, and put one to sleep in a mode: the state
 * machine both variants share (Docker: pause, stop; libpod adds checkpoint). Idempotent: a
 * container already where it should be is left alone, and a refused start or stop is checked
 * against a fresh inspect (someone else did it meanwhile).
 */
import type { Logger } from 'pino'
import { RelightError, isRelightError } from '../../core/errors.js'
import type { BackendState, SleepMode } from '../../core/provider.js'
import { checkpointContainer, restoreContainer } from './container-checkpoint.js'
import { stateOf } from './container-info.js'
import { inspectContainer } from './container-inspect.js'
import { pauseContainer, unpauseContainer } from './container-pause.js'
import { startContainer } from './container-start.js'
import { stopContainer } from './container-stop.js'
import { type ContainerApi, type ContainerInspect, containerName } from './containers.js'

/** Run a state-changing call; a refusal stands unless a fresh inspect shows the state reached. */
async function reaching(api: ContainerApi, id: string, op: () => Promise<void>, reached: (state: BackendState) => boolean, signal: AbortSignal): Promise<void> {
  try {
    await op()
  } catch (err) {
    if (!isRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED')) throw err
    if (!reached(stateOf(await inspectContainer(api, id, signal)))) throw err
  }
}

/**
 * Start, unpause or restore `c` (as just inspected); answers the state it was woken from. A
 * checkpoint that cannot be restored (CRIU gone, files lost) is started afresh rather than not
 * served at all: process state is lost, the reason is logged.
 */
export async function wakeContainer(api: ContainerApi, c: ContainerInspect, signal: AbortSignal, log: Logger): Promise<BackendState> {
  const id = c.Id
  const name = containerName(c)
  const state = stateOf(c)
  const running = (s: BackendState) => s === 'running'
  if (c.State.Status === 'removing' || c.State.Status === 'dead') {
    throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `container ${name} is ${c.State.Status} and cannot be started`, { backend: name, provider: api.engine.name })
  }
  switch (state) {
    case 'running':
    case 'starting':
      return state
    case 'paused':
      await unpauseContainer(api, id, signal)
      log.debug({ container: name }, 'unpaused')
      return state
    case 'checkpointed':
      try {
        await restoreContainer(api, id, signal)
        log.debug({ container: name }, 'restored')
        return state
      } catch (err) {
        if (!isRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED')) throw err
        log.warn({ backend: name, err: err.message }, 'restore failed; starting the container afresh')
      }
      break
    default:
      break
  }
  await reaching(api, id, () => startContainer(api, id, signal), running, signal)
  log.debug({ container: name }, 'started')
  return state
}

/**
 * Put `c` (as just inspected) to sleep in `mode`; nothing when it is asleep already (a stopped
 * container is deeper asleep than paused). `stopTimeoutSeconds`: the grace period before
 * SIGKILL (undefined: the container's own). Checkpoint failures reject with libpod's reason.
 */
export async function sleepContainer(api: ContainerApi, c: ContainerInspect, mode: SleepMode, stopTimeoutSeconds: number | undefined, signal: AbortSignal): Promise<void> {
  const id = c.Id
  let state = stateOf(c)
  const awake = state === 'running' || state === 'starting'
  switch (mode) {
    case 'pause':
      if (awake) await pauseContainer(api, id, signal)
      return
    case 'stop':
      if (awake || state === 'paused') await reaching(api, id, () => stopContainer(api, id, stopTimeoutSeconds, signal), (s) => s === 'stopped' || s === 'checkpointed', signal)
      return
    case 'checkpoint':
      if (state === 'paused') {
        await unpauseContainer(api, id, signal) // CRIU checkpoints running processes only
        state = 'running'
      }
      if (state === 'running') await checkpointContainer(api, id, signal)
      return
    default:
      throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `containers do not sleep with ${mode}`, { backend: containerName(c), provider: api.engine.name, mode })
  }
}
