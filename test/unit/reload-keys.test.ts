/**
 * Reload covers every top-level key: walking the config schema, each key is either applied live
 * (LIVE_KEYS, and the summary says so) or named in restart_needed (RESTART_KEYS). A key added to
 * the schema without a place here fails the first test; one that a reload silently ignores fails
 * the second. Then webhooks, the key that was once forgotten, end to end: added by a reload, a
 * real receiver gets the next event.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import pino from 'pino'
import { loadConfig, parseConfig } from '../../sidecar/config/load.js'
import { type Config, configSchema } from '../../sidecar/config/schema.js'
import { Registry } from '../../sidecar/core/registry.js'
import { type Sidecar, startSidecar } from '../../sidecar/daemon.js'
import { LIVE_KEYS, RESTART_KEYS, type ReloadSummary, Reloader } from '../../sidecar/reload.js'
import { MemoryProvider } from '../fakes/memory-provider.js'
import { tempDir } from '../helpers/net.js'
import { testSecret } from '../helpers/secret.js'
import { until } from '../helpers/wait.js'

const silent = pino({ level: 'silent' })
const TOKEN = testSecret()
const SECRET = testSecret()

/** For every top-level key: a YAML line that sets it to something other than the base config. */
const CHANGED: Record<string, string> = {
  listen: 'listen: 127.0.0.1:9999',
  ops_listen: 'ops_listen: 127.0.0.1:9998',
  access_log: 'access_log: 127.0.0.1:9997',
  access_log_max_connections: 'access_log_max_connections: 8',
  access_log_max_line: 'access_log_max_line: 1MiB',
  socket_group: 'socket_group: root',
  base_domains: 'base_domains: [example.org]',
  min_idle_timeout: 'min_idle_timeout: 10s',
  resync_interval: 'resync_interval: 1m',
  max_concurrent_wakes: 'max_concurrent_wakes: 3',
  max_concurrent_sleeps: 'max_concurrent_sleeps: 3',
  max_awake: 'max_awake: 3',
  shutdown_timeout: 'shutdown_timeout: 5s',
  state_dir: 'state_dir: /tmp/relight-reload-keys-elsewhere',
  fast_lane_dir: 'fast_lane_dir: /tmp/relight-reload-keys-awake',
  log_level: 'log_level: debug',
  defaults: 'defaults: { idle_timeout: 2h }',
  providers: 'providers: { docker: { socket: /nonexistent.sock } }',
  heartbeat: 'heartbeat: { url: "http://127.0.0.1:9/hb", secret: s, node_ip: 127.0.0.1 }',
  stateful: 'stateful: [{ hosts: [s.localhost], upstreams: [{ cidr: 127.0.0.0/8, host: 127.0.0.1, port: 9 }], secret: "0123456789abcdef0123456789abcdef" }]',
  dns: 'dns: { servers: [127.0.0.1] }',
  admin: `admin: { token: ${testSecret()} }`,
  webhooks: `webhooks: [{ url: "http://127.0.0.1:9/hook", events: ["*"], secret: "${SECRET}" }]`,
}

const schemaKeys = Object.keys(configSchema.shape)

/** Where the summary says a live key was applied. */
function appliedLive(summary: ReloadSummary, key: string): boolean {
  if (summary.settings.includes(key)) return true
  if (key === 'providers') return Object.values(summary.providers).some((ids) => ids.length > 0) || summary.failed.length > 0
  if (key === 'stateful' || key === 'dns') return summary.stateful
  if (key === 'heartbeat') return summary.heartbeat
  if (key === 'webhooks') return summary.webhooks
  return false
}

describe('reload: every top-level key', () => {
  it('is either applied live or needs a restart, never both, never neither', () => {
    const live = new Set<string>(LIVE_KEYS)
    const restart = new Set<string>(RESTART_KEYS)
    for (const key of schemaKeys) {
      assert.ok(live.has(key) !== restart.has(key), `${key}: put it in exactly one of LIVE_KEYS and RESTART_KEYS (sidecar/reload.ts)`)
    }
    for (const key of [...live, ...restart]) assert.ok(schemaKeys.includes(key), `${key} is listed in reload.ts but is not a config key`)
  })

  for (const key of schemaKeys) {
    it(`${key}: a change is reported (applied live or restart_needed)`, async () => {
      const line = CHANGED[key]
      assert.ok(line, `give ${key} a changed value in CHANGED (this test)`)
      const base = parseConfig(`admin: { token: ${TOKEN} }\n`, 'base.yaml')
      const next = parseConfig(key === 'admin' ? line : `admin: { token: ${TOKEN} }\n${line}`, 'next.yaml')
      const registry = new Registry([new MemoryProvider([])], base, silent)
      await registry.start()
      let current: Config = base
      const reloader = new Reloader({
        file: undefined,
        registry,
        logger: silent,
        current: () => current,
        createProviders: () => [new MemoryProvider([], { kind: 'docker' })],
        closeProvider: async () => {},
        replaceStateful: () => {},
        replaceHeartbeat: () => {},
        replaceWebhooks: () => {},
        commit: (c) => {
          current = c
        },
      })
      try {
        const result = await reloader.apply(next)
        assert.ok(result.ok)
        const restart = result.summary.restart_needed.includes(key)
        const live = appliedLive(result.summary, key)
        assert.ok(restart || live, `${key}: the reload neither applied it nor named it in restart_needed: ${JSON.stringify(result.summary)}`)
        assert.ok(!(restart && live), `${key}: both applied and named in restart_needed`)
        assert.ok(result.changed || restart, `${key}: "nothing changed" for a change`)
      } finally {
        registry.close()
      }
    })
  }
})

describe('reload: webhooks added while running', () => {
  const tmp = tempDir('relight-rk-')
  const received: { type: string }[] = []
  const receiver = createServer((req, res) => {
    let body = ''
    req.on('data', (d: Buffer) => (body += d.toString()))
    req.on('end', () => {
      received.push(JSON.parse(body) as { type: string })
      res.end()
    })
  })
  let sidecar: Sidecar | undefined
  after(async () => {
    await sidecar?.close()
    receiver.close()
    tmp.remove()
  })

  it('delivers the next event to a webhook the reload added', async () => {
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
    const port = (receiver.address() as { port: number }).port
    const file = join(tmp.dir, 'relight.yaml')
    const head = `listen: 127.0.0.1:0\nstate_dir: ${tmp.dir}/state\nadmin: { token: ${TOKEN} }\n`
    writeFileSync(file, head)
    sidecar = await startSidecar(loadConfig(file), { logger: silent, baseDir: tmp.dir, configFile: file })
    writeFileSync(file, `${head}webhooks: [{ url: "http://127.0.0.1:${port}/hook", events: [config.applied], secret: "${SECRET}" }]\n`)
    const result = await sidecar.reload()
    assert.ok(result.ok, JSON.stringify(result))
    assert.equal(result.summary.webhooks, true)
    assert.equal(result.changed, true)
    // the reload's own config.applied event is the first the new webhook sees
    await until(() => received.length > 0, 'the webhook receiver to get config.applied', 10_000)
    assert.equal(received[0]?.type, 'config.applied')
  })
})
