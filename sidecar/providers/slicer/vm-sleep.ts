/** Put one Slicer VM to sleep: pause, suspend (snapshot to disk) or shutdown (persistent only). */
import { stateForMode } from '../../core/provider.js'
import { RelightError } from '../../core/errors.js'
import type { SleepMode } from '../../core/provider.js'
import { paths, type SlicerClient } from './client.js'
import type { KnownNode } from './nodes.js'
import { notFound } from './vm-wake.js'

const OPS: Partial<Record<SleepMode, string>> = { pause: 'pause', suspend: 'suspend', stop: 'shutdown' }

export async function sleepNode(
  client: SlicerClient,
  known: KnownNode,
  mode: SleepMode,
  signal: AbortSignal,
  refresh: () => Promise<KnownNode>,
): Promise<void> {
  const id = known.info.id
  const op = OPS[mode]
  if (op === undefined) {
    throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `slicer VMs sleep with pause, suspend or stop, not ${mode}`, { backend: id, provider: 'slicer' })
  }
  if (mode === 'stop' && !known.persistent) {
    throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `Slicer node ${id} is not persistent: after a shutdown it could not be relaunched`, { backend: id, provider: 'slicer' })
  }
  const target = stateForMode(mode)
  if (known.info.state === target) return
  const result = await client.call('POST', paths.vm(id, op), signal)
  if (result.status >= 200 && result.status < 300) return
  if (result.status === 404) throw notFound(id)
  if (result.status === 409 || result.status === 400) {
    const now = await refresh()
    if (now.info.state === target || (mode === 'suspend' && now.info.state === 'stopped')) return
  }
  throw client.fail(result, `putting ${id} to sleep (POST /vm/${id}/${op})`, 'RELIGHT_ERR_BACKEND_NOT_FOUND', { backend: id })
}
