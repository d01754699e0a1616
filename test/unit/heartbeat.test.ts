import assert from 'node:assert/strict'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import type { BackendInfo, BackendState, Provider } from '../../sidecar/core/provider.js'
import { heartbeatConfigSchema } from '../../sidecar/heartbeat/config.js'
import { Heartbeat, type HeartbeatBackend, type HeartbeatPayload } from '../../sidecar/heartbeat/heartbeat.js'
import { REDACT } from '../../sidecar/logger.js'

const SECRET = 'hb-secret-do-not-log-0123456789'

interface Received {
  headers: IncomingMessage['headers']
  body: HeartbeatPayload
}

/** A router on loopback that records heartbeats and answers with `status()`. */
function receiver(status: () => number) {
  const got: Received[] = []
  let waiting: ((r: Received) => void)[] = []
  const server = createServer((req, res) => {
    let text = ''
    req.on('data', (d: Buffer) => (text += d.toString()))
    req.on('end', () => {
      const r = { headers: req.headers, body: JSON.parse(text) as HeartbeatPayload }
      got.push(r)
      const w = waiting
      waiting = []
      for (const f of w) f(r)
      res.writeHead(status()).end()
    })
  })
  return {
    got,
    next: () => new Promise<Received>((resolve) => waiting.push(resolve)),
    listen: () => new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}/heartbeat`))),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

function logs() {
  const lines: Record<string, unknown>[] = []
  let raw = ''
  const stream = new Writable({
    write(chunk: Buffer, _e, done) {
      raw += chunk.toString()
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>)
      done()
    },
  })
  return { logger: pino({ level: 'debug', redact: { paths: REDACT, censor: '[redacted]' } }, stream), lines, raw: () => raw }
}

function backend(provider: Provider, id: string, hosts: string[], state: BackendState): HeartbeatBackend {
  const info: BackendInfo = { id, name: id, hosts, state, upstreams: [], settings: {} }
  return { provider, info }
}

describe('heartbeat', () => {
  const statsCalls: string[] = []
  const podman: Provider = {
    kind: 'podman',
    sleepModes: ['checkpoint', 'pause', 'stop'],
    list: async () => [],
    wake: async () => { throw new Error('not woken in this test') },
    sleep: async () => undefined,
    stats: async (id) => {
      statsCalls.push(id)
      if (id === 'broken') throw new Error('stats endpoint failed')
      return id === 'api' ? { cpu_pct: 12.34, mem_mb: 100.06 } : { cpu_pct: 0, mem_mb: 20 }
    },
  }
  const process_: Provider = { kind: 'process', sleepModes: ['stop', 'pause'], list: async () => [], wake: async () => { throw new Error('not woken in this test') }, sleep: async () => undefined, stats: async () => ({ cpu_pct: 1.5, mem_mb: 30 }) }
  const backends = [
    backend(podman, 'api', ['api.example.com', 'www.api.example.com'], 'running'),
    backend(podman, 'frozen', ['frozen.example.com'], 'paused'),
    backend(podman, 'saved', ['saved.example.com'], 'checkpointed'),
    backend(podman, 'off', ['off.example.com'], 'stopped'),
    backend(process_, 'hello', ['hello.localhost'], 'running'),
    backend(process_, 'worker', [], 'running'), // not routed: not reported
  ]
  let status = 200
  const router = receiver(() => status)
  let url: string
  before(async () => {
    url = await router.listen()
  })
  after(() => router.close())

  const config = (extra: Record<string, unknown> = {}) => heartbeatConfigSchema.parse({ url, secret: SECRET, node_ip: '203.0.113.7', interval: '100ms', ...extra })

  it('POSTs every routed backend of every provider with bearer auth, in the caddy-relight-podman shape', async () => {
    const hb = new Heartbeat(config(), () => backends, pino({ level: 'silent' }))
    const received = router.next()
    assert.equal(await hb.beat(), true)
    const { headers, body } = await received
    assert.equal(headers.authorization, `Bearer ${SECRET}`)
    assert.match(String(headers['content-type']), /^application\/json/)
    assert.deepEqual(body, {
      node_ip: '203.0.113.7',
      containers: [
        { domain: 'api.example.com', status: 'running', cpu_pct: 12.3, mem_mb: 100.1, domains: ['api.example.com', 'www.api.example.com'], provider: 'podman', name: 'api' },
        { domain: 'frozen.example.com', status: 'paused', cpu_pct: 0, mem_mb: 20, domains: ['frozen.example.com'], provider: 'podman', name: 'frozen' },
        { domain: 'saved.example.com', status: 'checkpointed', cpu_pct: 0, mem_mb: 0, domains: ['saved.example.com'], provider: 'podman', name: 'saved' },
        { domain: 'off.example.com', status: 'stopped', cpu_pct: 0, mem_mb: 0, domains: ['off.example.com'], provider: 'podman', name: 'off' },
        { domain: 'hello.localhost', status: 'running', cpu_pct: 1.5, mem_mb: 30, domains: ['hello.localhost'], provider: 'process', name: 'hello' },
      ],
      total_cpu_pct: 13.8,
      total_mem_mb: 150.1,
    })
    assert.deepEqual(statsCalls.sort(), ['api', 'frozen'], 'stats only for running and paused backends')
    hb.close()
  })

  it('a failing stats call reports 0 for that backend and is logged once', async () => {
    const log = logs()
    const hb = new Heartbeat(config(), () => [backend(podman, 'broken', ['b.example.com'], 'running')], log.logger)
    assert.equal(await hb.beat(), true)
    assert.equal(await hb.beat(), true)
    assert.deepEqual(router.got.at(-1)?.body.containers[0], { domain: 'b.example.com', status: 'running', cpu_pct: 0, mem_mb: 0, domains: ['b.example.com'], provider: 'podman', name: 'broken' })
    assert.equal(log.lines.filter((l) => String(l.msg).startsWith('stats failed')).length, 1)
    hb.close()
  })

  it('failures are logged with backoff, never with the secret, and recovery is logged', async () => {
    const log = logs()
    const hb = new Heartbeat(config(), () => backends, log.logger)
    status = 500
    try {
      for (let i = 0; i < 5; i++) assert.equal(await hb.beat(), false)
    } finally {
      status = 200
    }
    const failures = log.lines.filter((l) => l.msg === 'heartbeat failed')
    assert.deepEqual(
      failures.map((l) => l.failures),
      [1, 2, 4],
      'logged on the 1st, 2nd and 4th consecutive failure',
    )
    assert.match(String(failures[0]?.err), /HTTP 500/)
    assert.equal(hb.counters.failed, 5)
    assert.equal(await hb.beat(), true)
    assert.ok(log.lines.some((l) => l.msg === 'heartbeat delivered again'))
    assert.ok(!log.raw().includes(SECRET), 'the secret never reaches the log')
    hb.close()
  })

  it('an unreachable router is a logged failure, not an exception', async () => {
    const log = logs()
    const hb = new Heartbeat(config({ url: 'http://127.0.0.1:9/heartbeat' }), () => backends, log.logger)
    assert.equal(await hb.beat(), false)
    assert.equal(log.lines.filter((l) => l.msg === 'heartbeat failed').length, 1)
    hb.close()
  })

  it('reports an exact name as domain when a backend also declares wildcards or first labels', async () => {
    const hb = new Heartbeat(config(), () => [backend(process_, 'w', ['*.shop.example', 'shop', 'shop.example'], 'stopped')], pino({ level: 'silent' }))
    const payload = await hb.collect(AbortSignal.timeout(5000))
    assert.equal(payload.containers[0]?.domain, 'shop.example')
    assert.deepEqual(payload.containers[0]?.domains, ['*.shop.example', 'shop', 'shop.example'])
  })

  it('start() sends at once, then every interval; close() stops it', async () => {
    const hb = new Heartbeat(config(), () => backends, pino({ level: 'silent' }))
    const first = router.next()
    hb.start()
    await first
    await router.next()
    hb.close()
    const sent = hb.counters.sent
    assert.ok(sent >= 1)
    assert.equal(await hb.beat(), false, 'a closed heartbeat sends nothing')
    assert.equal(hb.counters.sent, sent)
  })

  it('config: heartbeat is a strict block with durations, env secrets, and a real IP', () => {
    const cfg = parseConfig('heartbeat:\n  url: https://router.example/heartbeat\n  secret: "${HEARTBEAT_SECRET}"\n  node_ip: "${NODE_IP}"\n  interval: 30s\n', 'test', {
      HEARTBEAT_SECRET: SECRET,
      NODE_IP: '198.51.100.4',
    })
    assert.deepEqual(cfg.heartbeat, { url: 'https://router.example/heartbeat', secret: SECRET, node_ip: '198.51.100.4', interval: 30_000, timeout: 10_000 })
    assert.throws(() => parseConfig('heartbeat:\n  url: https://r.example/\n  secret: s\n  node_ip: 198.51.100.4\n  intervall: 30s\n', 'test'), /heartbeat\.intervall: unknown key "intervall"/)
    assert.throws(() => parseConfig('heartbeat:\n  url: https://r.example/\n  secret: s\n  node_ip: my-node\n', 'test'), /heartbeat\.node_ip: expected an IPv4 or IPv6 address/)
    assert.throws(() => parseConfig('heartbeat:\n  url: ftp://r.example/\n  secret: s\n  node_ip: 198.51.100.4\n', 'test'), /heartbeat\.url/)
  })
})
