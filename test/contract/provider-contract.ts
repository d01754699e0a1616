/**
 * The conformance suite every provider runs: against fakes in unit tests and against the real
 * engine (child processes, dockerd, podman, the Slicer simulator) in integration tests.
 *
 *   runProviderContract('docker', { make: async () => ({ provider, id, cleanup }) })
 *
 * A provider that cannot pass a test names it in `skip` with the reason; the skip is printed.
 */
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { after, before, describe, it, type TestContext } from 'node:test'
import { isRelightError } from '../../sidecar/core/errors.js'
import type { BackendInfo, Provider, ProviderEvent, SleepMode } from '../../sidecar/core/provider.js'
import { waitReady } from '../../sidecar/core/readiness.js'
import { stateForMode } from '../../sidecar/core/provider.js'

export interface ContractSubject {
  readonly provider: Provider
  /** A backend the provider manages, in any state; it must declare at least one host. */
  readonly id: string
  /** Release what `make` created (containers, processes, servers). */
  cleanup(): Promise<void>
}

export type ContractTest =
  | 'list'
  | 'wake'
  | 'sleep'
  | 'wake-after-sleep'
  | 'unknown-id'
  | 'unsupported-mode'
  | 'aborted-signal'
  | 'watch'

export interface ContractOptions {
  make(): Promise<ContractSubject>
  /** Modes to exercise; default: every mode the provider lists. */
  readonly modes?: readonly SleepMode[]
  readonly skip?: readonly { readonly reason: string; readonly tests: readonly ContractTest[] }[]
  /** Per-test timeout (ms); engines that start containers need more. */
  readonly timeout?: number
}

const ALL_MODES: readonly SleepMode[] = ['pause', 'stop', 'checkpoint', 'suspend', 'scale']

async function find(provider: Provider, id: string): Promise<BackendInfo> {
  const list = await provider.list(AbortSignal.timeout(10_000))
  const info = list.find((b) => b.id === id)
  assert.ok(info, `list() must report backend ${id}; got ${list.map((b) => b.id).join(', ') || 'nothing'}`)
  return info
}

/** wake(), and check what it resolves with: this backend, running, with an upstream. */
async function woken(provider: Provider, id: string, signal: AbortSignal): Promise<BackendInfo> {
  const info = await provider.wake(id, signal)
  assert.ok(info, 'wake() resolves with the backend\'s BackendInfo')
  assert.equal(info.id, id, 'wake() resolves with the woken backend')
  assert.equal(info.state, 'running', 'wake() resolves with state running')
  assert.ok(info.upstreams.length > 0, 'wake() resolves with at least one upstream')
  for (const u of info.upstreams) assert.match(u, /^(\[[0-9a-f:.]+\]|[^\s:]+):\d+$/i, `upstream ${u} must be host:port`)
  return info
}

function accepts(upstream: string): Promise<boolean> {
  const colon = upstream.lastIndexOf(':')
  return new Promise((resolve) => {
    const s = connect({ host: upstream.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(upstream.slice(colon + 1)) })
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

export function runProviderContract(name: string, options: ContractOptions): void {
  const skipped = new Map<ContractTest, string>()
  for (const s of options.skip ?? []) for (const t of s.tests) skipped.set(t, s.reason)
  const timeout = options.timeout ?? 30_000

  describe(`provider contract: ${name}`, () => {
    let subject: ContractSubject
    before(async () => {
      subject = await options.make()
    })
    after(async () => {
      await subject?.cleanup()
    })
    const test = (id: ContractTest, title: string, fn: (t: TestContext) => Promise<void>) => {
      const reason = skipped.get(id)
      it(title, { timeout, ...(reason ? { skip: reason } : {}) }, fn)
    }
    const modes = () => options.modes ?? subject.provider.sleepModes

    test('list', 'list() reports the backend with its hosts, a state and upstreams', async () => {
      const info = await find(subject.provider, subject.id)
      assert.ok(info.hosts.length > 0, 'the contract backend must declare a host')
      assert.equal(typeof info.name, 'string')
      assert.ok(['running', 'paused', 'stopped', 'checkpointed', 'suspended', 'scaled_to_zero', 'starting', 'unknown'].includes(info.state))
      for (const u of info.upstreams) assert.match(u, /^(\[[0-9a-f:.]+\]|[^\s:]+):\d+$/i, `upstream ${u} must be host:port`)
    })

    test('wake', 'wake() is idempotent, resolves with the running backend, and its upstream accepts connections', async () => {
      const signal = AbortSignal.timeout(timeout)
      await woken(subject.provider, subject.id, signal)
      const again = await woken(subject.provider, subject.id, signal)
      const info = await find(subject.provider, subject.id)
      assert.equal(info.state, 'running')
      assert.ok(info.upstreams.length > 0, 'a running backend has an upstream')
      await waitReady(again.upstreams[0] as string, 'tcp', signal)
    })

    test('sleep', 'sleep() in every supported mode is idempotent and reports the matching state', async () => {
      const signal = AbortSignal.timeout(timeout)
      for (const mode of modes()) {
        await subject.provider.wake(subject.id, signal)
        await subject.provider.sleep(subject.id, mode, signal)
        await subject.provider.sleep(subject.id, mode, signal)
        const info = await find(subject.provider, subject.id)
        assert.equal(info.state, stateForMode(mode), `after sleep(${mode})`)
      }
    })

    test('wake-after-sleep', 'wake() after each sleep mode brings the backend back to serving', async () => {
      const signal = AbortSignal.timeout(timeout)
      for (const mode of modes()) {
        await subject.provider.wake(subject.id, signal)
        await subject.provider.sleep(subject.id, mode, signal)
        // The core probes what wake() returns, and nothing else: it must be the live address.
        const returned = await woken(subject.provider, subject.id, signal)
        const info = await find(subject.provider, subject.id)
        assert.equal(info.state, 'running', `after sleep(${mode}) then wake()`)
        await waitReady(returned.upstreams[0] as string, 'tcp', signal)
        assert.ok(await accepts(returned.upstreams[0] as string), `after sleep(${mode}) then wake(): the returned upstream accepts connections`)
      }
    })

    test('unknown-id', 'operations on an unknown id reject with RELIGHT_ERR_BACKEND_NOT_FOUND', async () => {
      const signal = AbortSignal.timeout(timeout)
      const id = 'relight-contract-no-such-backend'
      await assert.rejects(subject.provider.wake(id, signal), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND'))
      await assert.rejects(subject.provider.sleep(id, modes()[0] ?? 'stop', signal), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND'))
    })

    test('unsupported-mode', 'a sleep mode the provider lacks rejects with RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', async (t) => {
      const missing = ALL_MODES.find((m) => !subject.provider.sleepModes.includes(m))
      if (missing === undefined) {
        t.skip('this provider supports every sleep mode')
        return
      }
      await assert.rejects(subject.provider.sleep(subject.id, missing, AbortSignal.timeout(timeout)), (e) =>
        isRelightError(e, 'RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED'),
      )
    })

    test('aborted-signal', 'an already aborted signal rejects list(), wake() and sleep() with a RelightError, at once', async () => {
      const controller = new AbortController()
      controller.abort(new Error('aborted by test'))
      const outcome = (op: Promise<unknown>) =>
        Promise.race([
          op.then(
            () => 'resolved',
            (e: unknown) => (isRelightError(e) ? 'relight error' : `other error: ${String(e)}`),
          ),
          new Promise<string>((resolve) => setTimeout(() => resolve('hung'), 5000).unref()),
        ])
      assert.equal(await outcome(subject.provider.list(controller.signal)), 'relight error', 'list()')
      assert.equal(await outcome(subject.provider.wake(subject.id, controller.signal)), 'relight error', 'wake()')
      assert.equal(await outcome(subject.provider.sleep(subject.id, modes()[0] ?? 'stop', controller.signal)), 'relight error', 'sleep()')
    })

    test('watch', 'watch() reports a state change made through the provider', async (t) => {
      const provider = subject.provider
      if (!provider.watch) {
        t.skip('this provider has no watch(); the periodic resync is its only source of changes')
        return
      }
      const controller = new AbortController()
      const events: ProviderEvent[] = []
      let notify: () => void = () => undefined
      provider.watch((e) => {
        events.push(e)
        notify()
      }, controller.signal)
      try {
        const signal = AbortSignal.timeout(timeout)
        await provider.wake(subject.id, signal)
        events.length = 0 // only what the sleep causes counts (a `resync` alone does not)
        const reported = () =>
          events.some(
            (e) =>
              (e.type === 'state' && e.id === subject.id && e.state !== 'running') ||
              (e.type === 'upsert' && e.backend.id === subject.id && e.backend.state !== 'running'),
          )
        const seen = new Promise<void>((resolve) => {
          notify = () => {
            if (reported()) resolve()
          }
        })
        await provider.sleep(subject.id, modes()[0] ?? 'stop', signal)
        notify()
        await seen
      } finally {
        controller.abort()
      }
    })
  })
}
