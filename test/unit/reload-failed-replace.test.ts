/**
 * A provider instance whose replacement fails keeps running on its old block: the reloader must
 * record that block (not the new one), so reloading the same file again retries the replacement.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import type { Config } from '../../sidecar/config/schema.js'
import { RelightError } from '../../sidecar/core/errors.js'
import { Registry } from '../../sidecar/core/registry.js'
import { Reloader } from '../../sidecar/reload.js'
import { MemoryProvider } from '../fakes/memory-provider.js'

const silent = pino({ level: 'silent' })
const backends = () => [{ id: 'b', hosts: ['b.localhost'], state: 'running' as const, upstreams: ['127.0.0.1:9'] }]
const withDocker = (stop: string, idle = '1h') =>
  parseConfig(`defaults: { idle_timeout: ${idle} }\nproviders:\n  docker: { socket: /nonexistent.sock, stop_timeout: ${stop} }\n`, 'test')

describe('Reloader: a failed provider replacement', () => {
  for (const [what, first, second] of [
    ['its block changed', withDocker('1s'), withDocker('2s')],
    ['only defaults changed', withDocker('1s'), withDocker('1s', '2h')],
  ] as const) {
    it(`is retried when the same file is reloaded again (${what})`, async () => {
      const old = new MemoryProvider(backends(), { kind: 'docker' })
      const registry = new Registry([old], first, silent)
      await registry.start()
      let current: Config = first
      let failNext = true
      const closed: MemoryProvider[] = []
      const reloader = new Reloader({
        file: undefined,
        registry,
        logger: silent,
        current: () => current,
        createProviders: () => {
          const p = new MemoryProvider(backends(), { kind: 'docker' })
          if (failNext) p.failList = new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'engine down')
          return [p]
        },
        closeProvider: async (p) => void closed.push(p as MemoryProvider),
        replaceStateful: () => {},
        replaceHeartbeat: () => {},
        replaceWebhooks: () => {},
        commit: (c) => {
          current = c
        },
      })
      try {
        const failed = await reloader.apply(second)
        assert.ok(failed.ok)
        assert.equal(failed.summary.failed.length, 1)
        assert.deepEqual(registry.providers, [old], 'the old instance keeps serving')
        assert.deepEqual(current.providers.docker, first.providers.docker, 'the recorded block is the one that runs')

        failNext = false
        const retried = await reloader.apply(second)
        assert.ok(retried.ok)
        assert.deepEqual(retried.summary.providers.replaced, ['docker'], 'the same file retries the replacement')
        assert.notEqual(registry.providers[0], old)
        assert.deepEqual(current.providers.docker, second.providers.docker)

        const again = await reloader.apply(second)
        assert.ok(again.ok)
        assert.equal(again.changed, false, 'once applied, nothing is replaced again')
      } finally {
        registry.close()
      }
    })
  }
})
