/** One task poller per service, shared by every waiter, stopped when none is left. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { TaskWatch } from '../../sidecar/providers/swarm/task-watch.js'
import { FakeSwarm } from '../fakes/swarm-engine.js'
import { drain, until } from '../helpers/wait.js'

describe('swarm task watch', () => {
  it('two waiters share one poll stream', async () => {
    const swarm = new FakeSwarm()
    swarm.taskScript = [[{ State: 'pending' }], [{ State: 'pending' }], [{ State: 'running' }]]
    swarm.add('web', {}, 0)
    swarm.writeAsOther('web', (s) => ({ ...s, Mode: { Replicated: { Replicas: 1 } } }))
    const closing = new AbortController()
    const watch = new TaskWatch(swarm.api, 'web', closing.signal, [1])
    const running = (ts: readonly { Status: { State: string } }[]) => (ts.some((t) => t.Status.State === 'running') ? true : undefined)
    const [a, b] = await Promise.all([watch.wait(running, AbortSignal.timeout(2000)), watch.wait(running, AbortSignal.timeout(2000))])
    assert.ok(a && b)
    assert.equal(swarm.count('GET /tasks'), 3, 'one poll per step for both waiters')
    closing.abort()
  })

  it('never has two polls of one service in flight, however many waiters', async () => {
    let inFlight = 0
    let most = 0
    let calls = 0
    const api = {
      tasks: async () => {
        calls++
        inFlight++
        most = Math.max(most, inFlight)
        await new Promise((r) => setTimeout(r, 5))
        inFlight--
        return calls >= 4 ? [{ ID: 't', ServiceID: 'web', DesiredState: 'running', Status: { State: 'running' } }] : []
      },
    } as unknown as ConstructorParameters<typeof TaskWatch>[0]
    const closing = new AbortController()
    const watch = new TaskWatch(api, 'web', closing.signal, [1])
    const running = (ts: readonly { Status: { State: string } }[]) => (ts.length > 0 ? true : undefined)
    await Promise.all([1, 2, 3].map(() => watch.wait(running, AbortSignal.timeout(2000))))
    assert.equal(most, 1)
    assert.equal(calls, 4)
    closing.abort()
  })

  it('stops polling when the last waiter leaves', async () => {
    const swarm = new FakeSwarm()
    swarm.add('web', {}, 0)
    const closing = new AbortController()
    const watch = new TaskWatch(swarm.api, 'web', closing.signal, [1])
    const leave = new AbortController()
    const waiting = watch.wait(() => undefined, leave.signal).catch(() => 'left')
    await until(() => swarm.count('GET /tasks') >= 2, 'polling')
    leave.abort()
    assert.equal(await waiting, 'left')
    // The poll in flight (or the 1 ms pause) ends, and the loop with it.
    await until(() => !watch.polling, 'the poller to stop', 10_000)
    const polls = swarm.count('GET /tasks')
    await drain()
    assert.equal(swarm.count('GET /tasks'), polls, 'no poll after the loop ended')
    closing.abort()
  })
})
