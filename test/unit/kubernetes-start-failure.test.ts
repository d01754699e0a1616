/**
 * A pod that fails to start fails the wake with RELIGHT_ERR_BACKEND_EXITED instead of at
 * wake_timeout (providers/kubernetes/start-failure.ts; issue 21 deliverable 4): inside wake()'s
 * wait for a Ready pod, and through the core's readiness hook `startFailure` once wake() answered.
 * Driven by recorded pod objects fed to the view (no informer, no pod request).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { ContainerStatus, Pod } from '../../sidecar/providers/kubernetes/workloads.js'
import { isRelightError } from '../../sidecar/core/errors.js'
import { recordedKubernetes } from '../helpers/kubernetes-recorded.js'
import { fedProvider, recordPatches, WEB_ID, webWorkload } from '../helpers/kubernetes-shared.js'
import { drain, until } from '../helpers/wait.js'

const A = 'v1 edge-2 aaaaaaaaaaaaaaaa 0'

function pod(name: string, ready: boolean, containers: ContainerStatus[] = [], extra: Partial<Pod['metadata']> = {}): Pod {
  return {
    metadata: { name, uid: `${name}-uid`, namespace: 'shop', labels: { app: 'web', 'pod-template-hash': 'abc' }, ownerReferences: [{ kind: 'ReplicaSet', name: 'web-abc', controller: true }], ...extra },
    status: { podIP: '127.0.0.9', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }], containerStatuses: containers },
  }
}

const crashLooping = (restarts: number): ContainerStatus => ({
  name: 'app',
  restartCount: restarts,
  state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 10s restarting failed container' } },
  lastState: { terminated: { exitCode: 3, reason: 'Error' } },
})

/**
 * Whether `p` has settled (resolved or rejected) once everything the test set off has run: the
 * view judges its waiters on each pod event, with no timer, so this is not a guess at a delay.
 */
async function settledNow<T>(p: Promise<T>): Promise<boolean> {
  let settled = false
  void p.then(
    () => (settled = true),
    () => (settled = true),
  )
  await drain()
  return settled
}

describe('kubernetes start failure', () => {
  const k8s = recordedKubernetes()

  it('a wake from 0 whose pod crash-loops rejects with BACKEND_EXITED at once, naming the container and its exit code', async () => {
    const p = fedProvider(k8s, webWorkload('10', 0, A))
    recordPatches(k8s, (body) => ({ status: 200, body: webWorkload('11', body.spec.replicas, body.metadata.annotations['relight.activity']) }))
    const started = Date.now()
    const waking = p.wake(WEB_ID, AbortSignal.timeout(20_000))
    await until(() => p.view.waiting === 1, 'the wake waits on the view')
    p.view.podEvent('ADDED', pod('web-abc-1', false, [{ name: 'app', state: { waiting: { reason: 'ContainerCreating' } } }]))
    p.view.podEvent('MODIFIED', pod('web-abc-1', false, [crashLooping(1)]))
    await assert.rejects(waking, (err) => isRelightError(err, 'RELIGHT_ERR_BACKEND_EXITED') && /web-abc-1 container app: CrashLoopBackOff \(last exit code 3\)/.test((err as Error).message))
    assert.ok(Date.now() - started < 5000, 'not at wake_timeout')
    assert.equal(p.view.waiting, 0)
  })

  it('startFailure: a container that exits non-zero, or cannot pull its image, after the wake resolves with the reason', async () => {
    const p = fedProvider(k8s, webWorkload('10', 0, A))
    recordPatches(k8s, (body) => ({ status: 200, body: webWorkload('11', body.spec.replicas, body.metadata.annotations['relight.activity']) }))
    const waking = p.wake(WEB_ID, AbortSignal.timeout(20_000))
    await until(() => p.view.waiting === 1, 'the wake waits on the view')
    p.view.podEvent('ADDED', pod('web-abc-1', true, [{ name: 'app', state: {} }]))
    await waking
    const probe = new AbortController()
    const failure = p.startFailure(WEB_ID, probe.signal)
    p.view.podEvent('MODIFIED', pod('web-abc-1', false, [{ name: 'app', restartCount: 0, state: { terminated: { exitCode: 1, reason: 'Error' } } }]))
    assert.match(await failure, /pod web-abc-1 container app: exited with code 1 \(Error\)/)
    probe.abort()
    // Restarted and running again; then a new pod cannot pull its image.
    p.view.podEvent('MODIFIED', pod('web-abc-1', true, [{ name: 'app', restartCount: 1, state: {} }]))
    const pull = p.startFailure(WEB_ID, AbortSignal.timeout(5000))
    p.view.podEvent('ADDED', pod('web-abc-2', false, [{ name: 'app', state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "nope"' } } }]))
    assert.match(await pull, /web-abc-2 container app: ImagePullBackOff: Back-off pulling image "nope"/)
  })

  it('never resolves for a failure already there when the wake began, a healthy or terminating pod; resolves at the next restart; stops on abort', async () => {
    const p = fedProvider(k8s, webWorkload('10', 1, A))
    // Up, one pod ready, one crash-looping already (restart 4): the wake writes a token only.
    p.view.podEvent('ADDED', pod('web-abc-1', true, [{ name: 'app', state: {} }]))
    p.view.podEvent('ADDED', pod('web-abc-2', false, [crashLooping(4)]))
    recordPatches(k8s, (body) => ({ status: 200, body: webWorkload('11', 1, body.metadata.annotations['relight.activity']) }))
    await p.wake(WEB_ID, AbortSignal.timeout(5000))
    const probe = new AbortController()
    const failure = p.startFailure(WEB_ID, probe.signal)
    p.view.podEvent('MODIFIED', pod('web-abc-2', false, [crashLooping(4)]))
    p.view.podEvent('MODIFIED', pod('web-abc-1', true, [{ name: 'app', state: { terminated: { exitCode: 0, reason: 'Completed' } } }]))
    // An old pod killed by a scale-down (deletionTimestamp, exit 137) is no start failure.
    p.view.podEvent('ADDED', pod('web-old-1', false, [{ name: 'app', state: { terminated: { exitCode: 137 } } }], { deletionTimestamp: '2026-01-01T00:00:00Z' }))
    assert.equal(await settledNow(failure), false, 'nothing new failed')
    p.view.podEvent('MODIFIED', pod('web-abc-2', false, [crashLooping(5)]))
    assert.match(await failure, /web-abc-2 container app: CrashLoopBackOff/)
    probe.abort()
    p.view.podEvent('MODIFIED', pod('web-abc-2', true, [{ name: 'app', restartCount: 5, state: {} }]))
    const stop = new AbortController()
    const quiet = p.startFailure(WEB_ID, stop.signal)
    assert.equal(p.view.waiting, 1)
    stop.abort()
    assert.equal(p.view.waiting, 0, 'the waiter is gone on abort')
    assert.equal(await settledNow(quiet), false, 'and it never resolves')
  })
})
