import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseConfig } from '../../sidecar/config/load.js'
import { containerInfo } from '../../sidecar/providers/moby/container-info.js'
import type { ContainerInspect as LibpodInspect } from '../../sidecar/providers/moby/containers.js'
import { PODMAN_SLEEP_MODES } from '../../sidecar/providers/podman/descriptor.js'
import { caddyInstalled } from '../helpers/caddy.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

describe('podman config and labels', () => {
  it('providers.podman: defaults, durations, unknown keys named', () => {
    const cfg = parseConfig('providers:\n  podman: {}\n', 'test')
    assert.deepEqual(cfg.providers.podman, [{ id: 'podman', socket: '/run/podman/podman.sock', label_prefix: 'relight' }])
    const full = parseConfig('providers:\n  podman:\n    socket: /tmp/p.sock\n    idle_timeout: 5m\n    wake_timeout: 5s\n    app_port: 3000\n    sleep: checkpoint\n', 'test')
    assert.equal(full.providers.podman?.[0]?.idle_timeout, 300_000)
    assert.equal(full.providers.podman?.[0]?.sleep, 'checkpoint')
    assert.throws(() => parseConfig('providers:\n  podman:\n    podman_socket: /x\n', 'test'), /providers\.podman\.podman_socket: unknown key/)
  })

  it('the example configuration parses', () => {
    parseConfig(readFileSync(join(ROOT, 'examples/podman/relight.yaml'), 'utf8'), 'examples/podman/relight.yaml', {})
    const readme = readFileSync(join(ROOT, 'examples/podman/README.md'), 'utf8')
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string)
    assert.ok(blocks.length >= 2)
    for (const block of blocks) parseConfig(block, 'examples/podman/README.md', { HEARTBEAT_SECRET: 's', NODE_IP: '198.51.100.1' })
  })

  it('the example Caddyfile is valid for real Caddy', { skip: caddyInstalled() ? undefined : 'caddy is not installed' }, () => {
    const r = spawnSync('caddy', ['adapt', '--config', join(ROOT, 'examples/podman/Caddyfile'), '--adapter', 'caddyfile'], { encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    assert.ok(r.stdout.includes('/_relight/auth'))
  })

  const inspect = (labels: Record<string, string>, extra: Partial<LibpodInspect> = {}): LibpodInspect => ({
    Id: 'c0ffee',
    Name: 'web',
    State: { Status: 'running', Running: true },
    Config: { Labels: labels },
    HostConfig: { NetworkMode: 'bridge' },
    NetworkSettings: { Networks: { podman: { IPAddress: '10.88.0.5' } } },
    ...extra,
  })

  it('labels (shared with the Docker provider): domains, port, settings, checkpoint allowed; bad values reported', () => {
    const problems: string[] = []
    const info = containerInfo(
      inspect({ 'relight.domain': ' a.example.com , www.a.example.com,', 'relight.port': '3000', 'relight.idle_timeout': '10m', 'relight.sleep': 'checkpoint', 'relight.strategy': 'sometimes', 'relight.group': 'shop' }),
      { labelPrefix: 'relight', sleepModes: PODMAN_SLEEP_MODES, appPort: 8080, settings: { sleep: 'stop', wake_timeout: 5000 }, onProblem: (p) => problems.push(p) },
    )
    assert.ok(info)
    assert.deepEqual(info.hosts, ['a.example.com', 'www.a.example.com'])
    assert.deepEqual(info.upstreams, ['10.88.0.5:3000'])
    assert.equal(info.group, 'shop')
    assert.deepEqual(info.settings, { sleep: 'checkpoint', wake_timeout: 5000, idle_timeout: 600_000 })
    assert.deepEqual(problems, ['relight.strategy="sometimes" must be blocking or waiting_page'])
    const bad: string[] = []
    containerInfo(inspect({ 'relight.domain': 'b.example.com', 'relight.sleep': 'hibernate' }), { labelPrefix: 'relight', sleepModes: PODMAN_SLEEP_MODES, appPort: 1, settings: {}, onProblem: (p) => bad.push(p) })
    assert.deepEqual(bad, ['relight.sleep="hibernate" must be checkpoint, pause or stop'])
    assert.equal(containerInfo(inspect({ 'other.domain': 'x' }), { labelPrefix: 'relight', sleepModes: PODMAN_SLEEP_MODES, appPort: 1, settings: {} }), undefined)
  })

  it('upstream (shared rules): host network on loopback, published port, else the container IP', () => {
    const up = (extra: Partial<LibpodInspect>) => containerInfo(inspect({ 'relight.domain': 'a.example.com' }, extra), { labelPrefix: 'relight', sleepModes: PODMAN_SLEEP_MODES, appPort: 3000, settings: {} })?.upstreams
    assert.deepEqual(up({ HostConfig: { NetworkMode: 'host' } }), ['127.0.0.1:3000'])
    assert.deepEqual(up({ NetworkSettings: { Ports: { '3000/tcp': [{ HostIp: '', HostPort: '41000' }] } } }), ['127.0.0.1:41000'])
    assert.deepEqual(up({}), ['10.88.0.5:3000'])
    assert.deepEqual(up({ NetworkSettings: {} }), [])
  })
})
