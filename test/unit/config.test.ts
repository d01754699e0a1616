import assert from 'node:assert/strict'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { ConfigError, parseConfig } from '../../sidecar/config/load.js'
import { parseDuration } from '../../sidecar/core/duration.js'
import { execSync } from 'node:child_process'
import { join } from 'node:path'
import { tempDir } from '../helpers/net.js'
import { testSecret } from '../helpers/secret.js'

function problems(yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(yaml, 'relight.yaml', env)
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err))
    return [...err.problems]
  }
  assert.fail('expected a configuration error')
}

const APP = `providers:
  process:
    apps:
      - name: hello
        hosts: [hello.localhost]
        command: [node, server.js]
        port: 3001
`

describe('config', () => {
  it('fills defaults and freezes the result', () => {
    const c = parseConfig(APP, 'x', {})
    assert.equal(c.listen, '127.0.0.1:9123')
    assert.equal(c.defaults.idle_timeout, 300_000)
    assert.equal(c.defaults.wake_timeout, 30_000)
    assert.equal(c.min_idle_timeout, 30_000)
    assert.equal(c.defaults.sleep, 'stop')
    const app = c.providers.process?.[0]?.apps[0]
    assert.equal(app?.restart, 'always')
    assert.equal(app?.grace_period, 10_000)
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.defaults) && Object.isFrozen(app))
  })

  it('names an unknown key with its path and line', () => {
    const out = problems(`${APP}        comand: [x]\n`)
    assert.deepEqual(out, ['line 8: providers.process.apps[0].comand: unknown key "comand"'])
    assert.match(problems('listen: 127.0.0.1:1\nlisten_adress: x\n')[0] ?? '', /^line 2: listen_adress: unknown key/)
  })

  it('names bad values with path and line', () => {
    const out = problems(`${APP}        restart: sometimes\n        grace_period: 10\n        stop_signal: SIGNOPE\n`)
    assert.equal(out.length, 3)
    assert.match(out[0] ?? '', /^line 8: providers\.process\.apps\[0\]\.restart: .*always.*on_failure.*never/)
    assert.match(out[1] ?? '', /^line 9: providers\.process\.apps\[0\]\.grace_period: 10 has no unit; write it like 10s/)
    assert.match(out[2] ?? '', /^line 10: providers\.process\.apps\[0\]\.stop_signal: expected a signal name/)
    assert.match(problems('defaults:\n  idle_timeout: soon\n')[0] ?? '', /line 2: defaults\.idle_timeout: "soon" is not a duration/)
    assert.match(problems('defaults:\n  idle_timeout: true\n')[0] ?? '', /line 2: defaults\.idle_timeout: expected a duration such as 30s, got boolean/)
    assert.match(problems('defaults:\n  wake_timeout: 0s\n')[0] ?? '', /line 2: defaults\.wake_timeout: must be at least 100ms/)
    assert.match(problems('shutdown_timeout: 10ms\n')[0] ?? '', /line 1: shutdown_timeout: must be at least 1s/)
    assert.match(problems('listen: "nowhere"\n')[0] ?? '', /line 1: listen: expected host:port/)
    assert.match(problems('base_domains: ["not a domain"]\n')[0] ?? '', /line 1: base_domains\[0\]: "not a domain" is not a domain name/)
  })

  it('requires a port for apps with hosts and rejects duplicate names', () => {
    const out = problems(`providers:\n  process:\n    apps:\n      - { name: a, hosts: [a.test], command: [x] }\n      - { name: a, command: [x] }\n`)
    assert.ok(out.some((p) => /apps\[0\]\.port: required when hosts are declared/.test(p)))
    assert.ok(out.some((p) => /apps\[1\]\.name: duplicate app name "a"/.test(p)))
  })

  it('takes one provider block or a list of instances, each with a unique id (default: the kind)', () => {
    const one = parseConfig('providers:\n  docker: { label_prefix: x }\n', 'x')
    assert.deepEqual(one.providers.docker?.map((d) => [d.id, d.label_prefix]), [['docker', 'x']])
    const two = parseConfig('providers:\n  docker:\n    - { id: blue, label_prefix: b }\n    - { id: green, label_prefix: g }\n', 'x')
    assert.deepEqual(two.providers.docker?.map((d) => [d.id, d.label_prefix]), [['blue', 'b'], ['green', 'g']])
    assert.deepEqual(problems('providers:\n  docker:\n    - { label_prefix: a }\n    - { label_prefix: b }\n'), [
      'line 4: providers.docker[1]: provider id "docker" is already used by providers.docker[0]; give each provider block its own id',
    ])
    assert.deepEqual(problems('providers:\n  docker: {}\n  podman: { id: docker }\n'), [
      'line 3: providers.podman: provider id "docker" is already used by providers.docker; give each provider block its own id',
    ])
    assert.deepEqual(problems('providers:\n  docker:\n    - { id: a }\n    - { id: b, labl_prefix: x }\n'), ['line 4: providers.docker[1].labl_prefix: unknown key "labl_prefix"'])
    assert.match(problems('providers:\n  docker: { id: "no spaces" }\n')[0] ?? '', /^line 2: providers\.docker\.id: a provider id is letters/)
    assert.match(problems('providers:\n  docker: []\n')[0] ?? '', /^line 2: providers\.docker: give at least one docker provider block/)
  })

  it('one re-list interval: resync_interval per provider block; the old watch_interval is an alias (0 = the top-level value)', () => {
    const c = parseConfig('providers:\n  podman: { watch_interval: 10s }\n  slicer: { url: /s.sock, resync_interval: 5s }\n  docker: {}\n', 'x')
    assert.equal(c.providers.podman?.[0]?.resync_interval, 10_000)
    assert.deepEqual(c.providers.podman?.[0]?.aliased, ['watch_interval'])
    assert.equal(c.providers.slicer?.[0]?.resync_interval, 5000)
    assert.equal(c.providers.slicer?.[0]?.aliased, undefined)
    assert.equal(c.providers.docker?.[0]?.resync_interval, undefined)
    assert.equal(parseConfig('providers:\n  slicer: { url: /s.sock, watch_interval: 0s }\n', 'x').providers.slicer?.[0]?.resync_interval, undefined)
    assert.deepEqual(problems('providers:\n  podman:\n    resync_interval: 5s\n    watch_interval: 10s\n'), [
      'line 4: providers.podman.watch_interval: watch_interval is the old name of resync_interval; give only resync_interval',
    ])
    assert.match(problems('providers:\n  docker: { watch_interval: 5s }\n')[0] ?? '', /unknown key "watch_interval"/)
    assert.match(problems('providers:\n  docker:\n    resync_interval: 5\n')[0] ?? '', /^line 3: providers\.docker\.resync_interval: 5 has no unit/)
  })

  it('interpolates ${ENV} and ${ENV:-default}; a missing variable names the key', () => {
    const c = parseConfig('listen: ${ADDR}\nadmin: { token: "${TOKEN:-3f1c0a9be27d4d58a6e0c5b1f4972e8d}" }\n', 'x', { ADDR: '127.0.0.1:7000' })
    assert.equal(c.listen, '127.0.0.1:7000')
    assert.equal(c.admin?.token, '3f1c0a9be27d4d58a6e0c5b1f4972e8d')
    assert.deepEqual(problems('admin:\n  token: ${RELIGHT_ADMIN_TOKEN}\n'), ['line 2: admin.token: environment variable RELIGHT_ADMIN_TOKEN is not set'])
  })

  it('reports YAML syntax errors with their line', () => {
    assert.match(problems('listen: 1\n  bad: [\n')[0] ?? '', /^line \d+: /)
    assert.match(problems('- a\n- b\n')[0] ?? '', /must be a YAML mapping/)
  })

  it('parses durations', () => {
    assert.equal(parseDuration('500ms'), 500)
    assert.equal(parseDuration('30s'), 30_000)
    assert.equal(parseDuration('5m'), 300_000)
    assert.equal(parseDuration('1h30m'), 5_400_000)
    assert.equal(parseDuration('1.5s'), 1500)
    assert.equal(parseDuration('0'), 0)
    for (const bad of ['', '5', 's', '5x', '5 s', '-1s', '1s2']) assert.equal(parseDuration(bad), undefined, bad)
  })

  it('accepts every sample configuration in the README and the examples', () => {
    const root = fileURLToPath(new URL('../../../', import.meta.url))
    const readme = readFileSync(`${root}README.md`, 'utf8')
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string)
    assert.ok(blocks.length >= 1, 'the README shows its sample configuration in ```yaml blocks')
    const env = { SLICER_TOKEN: 't', HEARTBEAT_SECRET: 's', NODE_IP: '127.0.0.1', DOORS_SECRET: 'yNdj+tO3R11Sh0CJrWFyWJcmxiDOP9iQYAB80YTP164=', RELIGHT_ADMIN_TOKEN: testSecret(), RELIGHT_WEBHOOK_SECRET: testSecret() }
    // The production block reads its token from /etc/relight/admin-token: made as the README says.
    const tmp = tempDir('relight-cfg-')
    const tokenFile = join(tmp.dir, 'admin-token')
    execSync(`umask 077 && openssl rand -hex 32 > ${tokenFile}`, { shell: '/bin/sh' })
    try {
      for (const block of blocks) parseConfig(block.replaceAll('/etc/relight/admin-token', tokenFile), 'README.md', env)
    } finally {
      tmp.remove()
    }
    parseConfig(readFileSync(`${root}examples/processes/relight.yaml`, 'utf8'), 'examples/processes/relight.yaml', env)
  })

  // Issue 23 item 4 and issue 22 item 5: secrets with real entropy; the token from a file.
  it('refuses guessable tokens and secrets with an error naming the key', () => {
    const weak = ['change-me-to-32-random-characters', 'a'.repeat(16), ' '.repeat(16), 'a'.repeat(64), 'ab'.repeat(32), `${testSecret().slice(0, 31)} `, 'short-but-random-9f3a']
    for (const token of weak) {
      assert.match(problems(`admin: { token: ${JSON.stringify(token)} }\n`).join('\n'), /^line 1: admin\.token: (contains whitespace|is a placeholder|too short|too predictable)/, token)
      assert.match(
        problems(`webhooks:\n  - { url: "http://127.0.0.1:9/x", events: ["*"], secret: ${JSON.stringify(token)} }\n`).join('\n'),
        /webhooks\[0\]\.secret: (contains whitespace|is a placeholder|too short|too predictable)/,
        token,
      )
    }
    assert.match(problems('webhooks:\n  - { url: "http://127.0.0.1:9/x", events: ["*"], secret: "${S:-change-me-0123456789}" }\n').join('\n'), /webhooks\[0\]\.secret: is a placeholder/)
    const good = testSecret()
    assert.equal(parseConfig(`admin: { token: ${good} }\n`, 'x', {}).admin?.token, good)
  })

  it('reads admin.token_file (0600/0640, absolute, one line) and names the key when it cannot', () => {
    const tmp = tempDir('relight-tok-')
    try {
      const file = join(tmp.dir, 'admin-token')
      const token = testSecret()
      writeFileSync(file, `${token}\n`, { mode: 0o600 })
      assert.equal(parseConfig(`admin: { token_file: ${file} }\n`, 'x', {}).admin?.token, token)
      chmodSync(file, 0o640)
      assert.equal(parseConfig(`admin: { token_file: ${file} }\n`, 'x', {}).admin?.token, token)
      chmodSync(file, 0o644)
      assert.match(problems(`admin: { token_file: ${file} }\n`).join('\n'), /^line 1: admin\.token_file: .* can be read or written by every user \(mode 644\)/)
      chmodSync(file, 0o600)
      writeFileSync(file, 'change-me-to-32-random-characters\n')
      assert.match(problems(`admin: { token_file: ${file} }\n`).join('\n'), /admin\.token_file: the token in .* is a placeholder/)
      assert.match(problems('admin: { token_file: admin-token }\n').join('\n'), /admin\.token_file: use an absolute path/)
      assert.match(problems(`admin: { token_file: ${tmp.dir}/missing }\n`).join('\n'), /admin\.token_file: cannot read .*ENOENT/)
      assert.match(problems(`admin: { token: ${token}, token_file: ${file} }\n`).join('\n'), /admin: set exactly one of token and token_file/)
    } finally {
      tmp.remove()
    }
  })

  // Issue 23 item 8: a value that cannot be a host is an error, not a silently unroutable entry.
  it('refuses process app hosts that are not host names, naming the entry', () => {
    const app = (hosts: string) => `providers:\n  process:\n    apps:\n      - { name: web, hosts: ${hosts}, command: [x], port: 3000 }\n`
    assert.match(problems(app(`['<img src=x onerror=alert(1)>']`)).join('\n'), /^line 4: providers\.process\.apps\[0\]\.hosts\[0\]: not a host name, \*\.wildcard or first label/)
    assert.match(problems(app(`[ok.example.com, 'bad host']`)).join('\n'), /hosts\[1\]: not a host name/)
    assert.deepEqual(parseConfig(app(`[web.example.com, '*.apps.example.com', web]`), 'x', {}).providers.process?.[0]?.apps[0]?.hosts, ['web.example.com', '*.apps.example.com', 'web'])
  })
})
