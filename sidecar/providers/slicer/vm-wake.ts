/**
 * Wake one Slicer VM: resume a paused one, restore a suspended one (`?wait=agent`), relaunch a
 * stopped persistent one; then wait until the agent health endpoint answers 200. The core
 * probes the app itself afterwards.
 */
import { RelightError, throwIfAborted } from '../../core/errors.js'
import type { BackendState, SleepMode } from '../../core/provider.js'
import { paths, type SlicerClient } from './client.js'
import type { KnownNode } from './nodes.js'
import { delay } from '../../core/timers.js'

type WakeOp = 'resume' | 'restore' | 'relaunch'

/** Calls to try, in order, to wake a node in `state` (several when its history is unknown). */
export function wakeOps(state: BackendState, persistent: boolean, lastSleep: SleepMode | undefined): WakeOp[] {
  switch (state) {
    case 'running':
      return []
    case 'paused':
      return ['resume']
    case 'suspended':
      return ['restore']
    case 'stopped':
      if (lastSleep === 'stop') return ['relaunch']
      return persistent ? ['restore', 'relaunch'] : ['restore']
    default:
      return ['resume', 'restore', ...(persistent ? (['relaunch'] as const) : [])]
  }
}

export function notFound(id: string): RelightError {
  return new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `Slicer node ${id} no longer exists`, { backend: id, provider: 'slicer' })
}

export async function wakeNode(
  client: SlicerClient,
  known: KnownNode,
  lastSleep: SleepMode | undefined,
  signal: AbortSignal,
  refresh: () => Promise<KnownNode>,
): Promise<void> {
  const id = known.info.id
  // No status in the list (some endpoints leave it out): a healthy agent means it runs.
  if (known.info.state === 'unknown' && (await client.call('HEAD', paths.vm(id, 'health'), signal)).status === 200) return
  let current = known
  for (let round = 0; round < 2; round++) {
    const ops = wakeOps(current.info.state, current.persistent, round === 0 ? lastSleep : undefined)
    if (ops.length === 0) return waitAgent(client, id, signal)
    let last: { op: WakeOp; status: number; body: unknown } | undefined
    for (const op of ops) {
      const result = await client.call('POST', paths.vm(id, op, op === 'restore' ? '?wait=agent' : ''), signal)
      if (result.status >= 200 && result.status < 300) return waitAgent(client, id, signal)
      if (result.status === 404) throw notFound(id)
      if (result.status !== 409 && result.status !== 400) throw client.fail(result, `waking ${id} (POST /vm/${id}/${op})`, 'RELIGHT_ERR_BACKEND_NOT_FOUND', { backend: id })
      last = { op, ...result }
    }
    // Every call refused for the node's state: it changed under us. Look again, once.
    const before = current.info.state
    current = await refresh()
    if (round === 1 || (current.info.state === before && current.info.state !== 'running')) {
      if (current.info.state === 'stopped' && !current.persistent) {
        throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `Slicer node ${id} is stopped and not persistent: it cannot be relaunched (create it with "persistent": true to use sleep mode stop)`, { backend: id, provider: 'slicer' })
      }
      throw client.fail({ status: last?.status ?? 409, body: last?.body }, `waking ${id} (POST /vm/${id}/${last?.op ?? 'resume'})`, 'RELIGHT_ERR_BACKEND_NOT_FOUND', { backend: id })
    }
  }
}

const FIRST_DELAY_MS = 5
const MAX_DELAY_MS = 200

/** `HEAD /vm/{hostname}/health` until 200; a 404 means the node is gone. */
export async function waitAgent(client: SlicerClient, id: string, signal: AbortSignal): Promise<void> {
  let wait = FIRST_DELAY_MS
  for (;;) {
    const result = await client.call('HEAD', paths.vm(id, 'health'), signal)
    if (result.status === 200) return
    if (result.status === 404) throw notFound(id)
    await delay(wait, signal)
    throwIfAborted(signal)
    wait = Math.min(MAX_DELAY_MS, Math.ceil(wait * 1.5))
  }
}
