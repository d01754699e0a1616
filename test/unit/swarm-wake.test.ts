/**
 * wake() on an in-memory swarm: one spec update writes replicas and a token; an already-up wake
 * still writes a token; a group's dependency is up and token-written before the member; a task
 * that lost the host port to the old task is waited out, not a failed wake.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isRelightError } from '../../sidecar/core/errors.js'
import { fakeSwarmSetup } from '../helpers/swarm-fake.js'

const WEB = { 'relight.domain': 'web.example.com' }
const updates = (calls: string[]) => calls.filter((c) => c.startsWith('POST'))

describe('swarm wake', () => {
  const { swarm, sidecar } = fakeSwarmSetup()

  it('wakes from 0 with ONE update that writes the awake count and a token, without a stray upsert', async () => {
    swarm().add('web', { ...WEB, 'relight.asleep.replicas': '2' }, 0)
    const a = await sidecar()
    const calls = swarm().calls.length
    const info = await a.provider.wake('web', AbortSignal.timeout(2000))
    assert.equal(info.state, 'running')
    assert.deepEqual(updates(swarm().calls.slice(calls)), ['POST /services/web/update'])
    const labels = swarm().services.get('web')?.Spec.Labels ?? {}
    assert.equal(swarm().services.get('web')?.Spec.Mode?.Replicated?.Replicas, 2)
    assert.match(labels['relight.activity'] ?? '', /^v1 edge-1 [0-9a-f]{16} 0$/)
    assert.equal(labels['relight.asleep.replicas'], undefined)
    assert.ok(labels['relight.last_activity'], 'the compat label is still written')
    assert.ok(swarm().calls.slice(calls).length <= 20, `engine requests for one wake: ${swarm().calls.slice(calls).length}`)
    assert.deepEqual(a.events.filter((e) => e.type !== 'resync' && e.type !== 'connection'), [])
  })

  it('a wake that finds the service up still writes a token (and only that)', async () => {
    swarm().add('web', WEB, 1)
    const a = await sidecar()
    const before = swarm().services.get('web')?.Spec.Labels?.['relight.activity']
    const calls = swarm().calls.length
    await a.provider.wake('web', AbortSignal.timeout(2000))
    assert.deepEqual(updates(swarm().calls.slice(calls)), ['POST /services/web/update'])
    assert.notEqual(swarm().services.get('web')?.Spec.Labels?.['relight.activity'], before)
    assert.equal(swarm().services.get('web')?.Spec.Mode?.Replicated?.Replicas, 1)
  })

  it('ensures a group\'s dependency up and token-written BEFORE the member', async () => {
    swarm().add('db', { 'relight.group': 'shop' }, 0)
    swarm().add('web', { ...WEB, 'relight.group': 'shop' }, 0)
    const a = await sidecar()
    const calls = swarm().calls.length
    await a.provider.wake('web', AbortSignal.timeout(2000))
    assert.deepEqual(updates(swarm().calls.slice(calls)), ['POST /services/db/update', 'POST /services/web/update'])
    assert.match(swarm().services.get('db')?.Spec.Labels?.['relight.activity'] ?? '', /^v1 edge-1 /)
    assert.equal(swarm().services.get('db')?.Spec.Mode?.Replicated?.Replicas, 1)
  })

  it('a task that failed with "port is already allocated" is waited out; its replacement runs', async () => {
    swarm().add('web', WEB, 0)
    const a = await sidecar()
    swarm().taskScript = [
      [{ State: 'pending' }],
      [{ State: 'failed', Err: 'Bind for 0.0.0.0:8080 failed: port is already allocated', desired: 'shutdown' }],
      [{}, { State: 'running' }],
    ]
    const info = await a.provider.wake('web', AbortSignal.timeout(2000))
    assert.equal(info.state, 'running')
  })

  it('a task failing for another reason fails the wake (BACKEND_EXITED)', async () => {
    swarm().add('web', WEB, 0)
    const a = await sidecar()
    swarm().taskScript = [[{ State: 'pending' }], [{ State: 'failed', Err: 'exec: no such file', desired: 'shutdown' }]]
    await assert.rejects(a.provider.wake('web', AbortSignal.timeout(2000)), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_EXITED') && /no such file/.test(e.message))
  })

  it('two members woken at once: neither answers before the dependency\'s task runs (the second finds it already scaled up)', async () => {
    swarm().add('db', { 'relight.group': 'shop' }, 0)
    swarm().add('web', { ...WEB, 'relight.group': 'shop' }, 0)
    swarm().add('admin', { 'relight.domain': 'admin.example.com', 'relight.group': 'shop' }, 0)
    const a = await sidecar()
    swarm().taskScripts.set('db', [[{ State: 'pending' }], [{ State: 'pending' }], [{ State: 'pending' }], [{ State: 'pending' }], [{ State: 'running' }]])
    const dbRuns = () => swarm().tasks.some((t) => t.ServiceID === 'db' && t.Status.State === 'running')
    const woke: boolean[] = []
    await Promise.all(['web', 'admin'].map((id) => a.provider.wake(id, AbortSignal.timeout(2000)).then(() => woke.push(dbRuns()))))
    assert.deepEqual(woke, [true, true])
  })
})
