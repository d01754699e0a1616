/** The readiness hook: a woken task that failed (and none runs) ends the probe with its reason; a port-busy failure does not. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fakeSwarmSetup, until } from '../helpers/swarm-fake.js'
import { drain } from '../helpers/wait.js'

const WEB = { 'relight.domain': 'web.example.com' }

describe('swarm start failure hook', () => {
  const { swarm, sidecar } = fakeSwarmSetup()

  it('resolves with the reason when the woken task failed and none runs', async () => {
    swarm().add('web', WEB, 0)
    const a = await sidecar()
    await a.provider.wake('web', AbortSignal.timeout(2000))
    for (const t of swarm().tasks) Object.assign(t, { DesiredState: 'shutdown', Status: { ...t.Status, State: 'failed', Err: 'task: non-zero exit (1)' } })
    const reason = await a.provider.startFailure('web', AbortSignal.timeout(2000))
    assert.match(reason, /a task of service web failed: task: non-zero exit \(1\)/)
  })

  it('does not resolve for a task that lost the port to the old one (Swarm starts a replacement)', async () => {
    swarm().add('web', WEB, 0)
    const a = await sidecar()
    await a.provider.wake('web', AbortSignal.timeout(2000))
    for (const t of swarm().tasks) Object.assign(t, { DesiredState: 'shutdown', Status: { ...t.Status, State: 'failed', Err: 'port is already allocated' } })
    const probe = new AbortController()
    const polls = swarm().count('GET /tasks')
    let outcome: string | undefined
    void a.provider.startFailure('web', probe.signal).then((r) => (outcome = r))
    // Two polls: the hook has judged the failed tasks at least once (the second starts after).
    await until(() => outcome !== undefined || swarm().count('GET /tasks') >= polls + 2, 'the hook to poll the tasks twice')
    await drain()
    probe.abort()
    assert.equal(outcome, undefined, 'no failure')
  })
})
