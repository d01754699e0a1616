/**
 * CRIU checkpoint and restore: libpod only (Docker's checkpoint API is experimental and is not
 * used). `keep` keeps the checkpoint files (and CRIU's logs, for diagnosis) so the container can
 * be restored in place; `tcpEstablished` lets connections open at checkpoint time survive it.
 * Both calls use the same flags.
 */
import { RelightError, isRelightError } from '../../core/errors.js'
import { type ContainerApi, postContainer } from './containers.js'

export const CHECKPOINT_QUERY = { keep: true, tcpEstablished: true } as const

async function criuOp(api: ContainerApi, id: string, op: 'checkpoint' | 'restore', signal: AbortSignal): Promise<void> {
  if (api.variant !== 'libpod') {
    throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `${op} needs Podman's libpod API`, { backend: id, provider: api.engine.name, mode: 'checkpoint' })
  }
  try {
    await postContainer(api, id, op, signal, CHECKPOINT_QUERY)
  } catch (err) {
    if (isRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED')) {
      const why = err.context.engine?.kind === 'status' && err.context.engine.engineMessage ? err.context.engine.engineMessage : err.message
      throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `${op} failed: ${why}`, { ...err.context, backend: id, operation: op }, { cause: err })
    }
    throw err
  }
}

/**
 * Checkpoint a running container (it then looks exited, with `State.Checkpointed`). Rejects with
 * RELIGHT_ERR_PROVIDER_FAILED carrying libpod's reason when CRIU fails (not installed, kernel
 * not supported): the core then falls back to `fallback_sleep`.
 */
export function checkpointContainer(api: ContainerApi, id: string, signal: AbortSignal): Promise<void> {
  return criuOp(api, id, 'checkpoint', signal)
}

/** Restore a checkpointed container in place. */
export function restoreContainer(api: ContainerApi, id: string, signal: AbortSignal): Promise<void> {
  return criuOp(api, id, 'restore', signal)
}
