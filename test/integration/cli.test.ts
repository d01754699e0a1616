/**
 * The sidecar as users run it: `relight-sidecar serve|check|snippet` as a separate process.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'
import { caddySkip, type RunningCaddy, startCaddy, stopChild } from '../helpers/caddy.js'
import { freePort, tempDir } from '../helpers/net.js'
import { pidAlive, until } from '../helpers/wait.js'
import { startSidecarProcess, stopSidecarProcess } from '../helpers/sidecar-process.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const MAIN = join(ROOT, 'dist/sidecar/main.js')
const APP = join(ROOT, 'test/fixtures/http-app.mjs')
/** One process app of a config's `apps:` list (YAML flow style), on a free port; `extra` adds settings. */
const app = async (name: string, extra: string, hosts = `${name}.localhost`) =>
  `      - { name: ${name}, hosts: [${hosts}], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}" }, port: ${await freePort()}, stdout: "null"${extra} }\n`

/** A file's text, or '' while it does not exist yet. */
function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

function serve(config: string): { child: ChildProcess; output: () => string; listening: Promise<void> } {
  const child = spawn(process.execPath, [MAIN, 'serve', '--config', config, '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()))
  const listening = until(() => output.includes('relight-sidecar listening'), 'the sidecar to listen', 60_000).then(() => undefined)
  return { child, output: () => output, listening }
}

describe('relight-sidecar CLI', () => {
  it('prints help for every command and fails on unknown ones', () => {
    assert.match(cli('--help').out, /relight-sidecar serve --config FILE/)
    for (const c of ['serve', 'check', 'reload', 'health', 'snippet']) assert.equal(cli(c, '--help').code, 0, c)
    const bad = cli('frobnicate')
    assert.equal(bad.code, 2)
    assert.match(bad.err, /unknown command "frobnicate"/)
    assert.match(cli('serve').err, /--config FILE is required/)
  })

  it('prints the Caddy snippet', () => {
    const r = cli('snippet')
    assert.equal(r.code, 0)
    assert.equal(r.out, readFileSync(join(ROOT, 'caddy/relight.caddy'), 'utf8'))
    assert.match(r.out, /request_header -X-Relight-Upstream/)
  })

  it('check says which snippet version the fast lane needs', () => {
    const tmp = tempDir('relight-cli-fastlane-')
    try {
      const file = join(tmp.dir, 'relight.yaml')
      writeFileSync(file, `listen: 127.0.0.1:0\nfast_lane_dir: ${tmp.dir}/awake\ndefaults: { fast_lane: on }\n`)
      const r = cli('check', '--config', file)
      assert.match(r.out, /ok +fast_lane: needs snippet version 4 .*import relight_fast 127\.0\.0\.1:0 .*\/awake/)
      // the pid namespace is checked, not stated as an ok line; what cannot be checked says so
      assert.doesNotMatch(r.out, /ok .*must share/)
      assert.match(r.out, /ok +fast_lane: this process runs in the initial \(host\) pid namespace/)
      assert.match(r.out, /UNCHECKED +fast_lane: that Caddy shares this network namespace .* and passes this fast_lane_dir to relight_fast cannot be checked/)
      // README "Fast lane": without socket_group other users read the pid in the flags
      assert.match(r.out, /WARNING +fast_lane: flags in .*\/awake are world-readable \(0755\): .*set socket_group/, r.out)
      assert.doesNotMatch(r.out, /ok .*world-readable/, r.out)
      // a pid_max below 4194304 lets a local user take a dead sidecar's pid in seconds (A1)
      const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'))
      if (pidMax < 4_194_304) assert.match(r.out, new RegExp(`WARNING +fast_lane: kernel\\.pid_max is ${pidMax}: .*Restart=always`))
      else assert.doesNotMatch(r.out, /kernel\.pid_max/)
      if (process.getuid?.() === 0 && existsSync('/usr/bin/unshare')) {
        const own = spawnSync('/usr/bin/unshare', ['--pid', '--fork', '--mount-proc', process.execPath, MAIN, 'check', '--config', file], { encoding: 'utf8', timeout: 60_000 })
        assert.match(own.stdout, /PROBLEM +fast_lane: the sidecar runs in its own pid namespace .*fast_lane_shared_pid_namespace: true/)
        writeFileSync(file, `listen: 127.0.0.1:0\nfast_lane_dir: ${tmp.dir}/awake\nfast_lane_shared_pid_namespace: true\naccess_log: 127.0.0.1:0\ndefaults: { fast_lane: on }\n`)
        const acked = spawnSync('/usr/bin/unshare', ['--pid', '--fork', '--mount-proc', process.execPath, MAIN, 'check', '--config', file], { encoding: 'utf8', timeout: 60_000 })
        assert.match(acked.stdout, /WARNING +fast_lane: the sidecar runs in its own pid namespace .*says Caddy shares it/)
        assert.match(acked.stdout, /WARNING +fast_lane with a TCP access_log/)
      }
      writeFileSync(file, 'listen: 127.0.0.1:0\ndefaults: { fast_lane: on }\n')
      const bad = cli('check', '--config', file)
      assert.equal(bad.code, 1)
      assert.match(bad.out + bad.err, /fast_lane_dir/)
    } finally {
      tmp.remove()
    }
  })

  it('check resolves stateful upstream hosts; a stateful-only config needs no provider', async () => {
    const tmp = tempDir('relight-cli-stateful-')
    after(() => tmp.remove())
    const secret = Buffer.alloc(32, 5).toString('base64')
    const good = join(tmp.dir, 'good.yaml')
    // listen: check also checks that serve could listen (the default 9123 may be taken here)
    writeFileSync(good, `listen: 127.0.0.1:${await freePort()}\nstateful:\n  - hosts: [doors.localhost]\n    secret: "${secret}"\n    cookie_name: upstream\n    upstreams:\n      - { cidr: 127.0.0.2/31, host: localhost, port: 8090 }\n      - { cidr: 127.0.0.4/32, host: 127.0.0.4, port: 8090 }\n`)
    const r1 = cli('check', '--config', good)
    assert.equal(r1.code, 0, r1.out + r1.err)
    assert.match(r1.out, /ok +stateful\[0\] doors\.localhost: localhost → 127\.0\.0\.1/)
    assert.match(r1.out, /ok +stateful\[0\] doors\.localhost: 127\.0\.0\.4 → 127\.0\.0\.4, pods in 127\.0\.0\.4\/32 on port 8090/)
    // An unknown name, asked of a DNS server on loopback that has no record for it.
    const records = join(tmp.dir, 'records.json')
    writeFileSync(records, '{}')
    const { serveDns } = (await import(new URL('../../../examples/doors-rollout/dns.mjs', import.meta.url).href)) as {
      serveDns: (file: string, host: string, port: number) => Promise<import('node:dgram').Socket>
    }
    const dns = await serveDns(records, '127.0.0.1', 0)
    after(() => dns.close())
    const bad = join(tmp.dir, 'bad.yaml')
    writeFileSync(bad, `dns: { servers: ["127.0.0.1:${dns.address().port}"] }\nstateful:\n  - hosts: [doors.localhost]\n    secret: "${secret}"\n    upstreams: [{ cidr: 127.0.0.0/24, host: missing.doors.test, port: 8090 }]\n`)
    const r2 = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [MAIN, 'check', '--config', bad], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString()))
      child.on('exit', (code) => resolve({ code, out }))
    })
    assert.equal(r2.code, 1, r2.out)
    assert.match(r2.out, /PROBLEM +stateful\[0\] doors\.localhost: missing\.doors\.test does not resolve/)
  })

  it('check explains problems in words and exits non-zero; passes on a good config', async () => {
    const tmp = tempDir()
    const bad = join(tmp.dir, 'bad.yaml')
    writeFileSync(bad, `providers:\n  process:\n    apps:\n      - { name: a, hosts: [a.localhost], command: [no-such-program-xyz], port: 1, dir: /nonexistent }\n`)
    const r1 = cli('check', '--config', bad)
    assert.equal(r1.code, 1)
    assert.match(r1.out, /PROBLEM\s+process: a: command "no-such-program-xyz" not found/)
    assert.match(r1.out, /PROBLEM\s+process: a: working directory \/nonexistent does not exist/)
    assert.match(r1.out, /WARNING +access_log is not configured/)
    const typo = join(tmp.dir, 'typo.yaml')
    writeFileSync(typo, 'listen: 127.0.0.1:1\nidle_timout: 5m\n')
    const r2 = cli('check', '--config', typo)
    assert.equal(r2.code, 1)
    assert.match(r2.err, /line 2: idle_timout: unknown key "idle_timout"/)
    const good = join(tmp.dir, 'good.yaml')
    writeFileSync(good, `listen: 127.0.0.1:${await freePort()}\naccess_log: unix:${tmp.dir}/a.sock\nproviders:\n  process:\n    apps:\n      - { name: a, hosts: [a.localhost], command: [${process.execPath}, ${APP}], port: ${await freePort()} }\n`)
    const r3 = cli('check', '--config', good)
    assert.equal(r3.code, 0, r3.out + r3.err)
    assert.match(r3.out, /all checks passed/)
    assert.match(r3.out, /snippet version 3 .*Version 2 .*HTTP\/2 stream resets.*max_request_duration.*Version 1 must be replaced.*X-Relight-\* headers.*old relight snippet/, 'check tells users of an older snippet what it misses (and why version 1 must go)')
    assert.equal(cli('check', '--config', join(tmp.dir, 'missing.yaml')).code, 1)
    tmp.remove()
  })

  it('check says where busy_cpu cannot apply (a provider that cannot measure CPU)', async (t) => {
    const tmp = tempDir()
    t.after(() => tmp.remove())
    const file = join(tmp.dir, 'busy.yaml')
    writeFileSync(file, `listen: 127.0.0.1:${await freePort()}\ndefaults: { busy_cpu: 10% }\nproviders:\n  slicer: { url: ${tmp.dir}/no-slicer.sock }\n  process:\n    apps:\n      - { name: a, hosts: [a.localhost], command: [${process.execPath}, ${APP}], port: ${await freePort()} }\n`)
    const r = cli('check', '--config', file)
    assert.match(r.out, /WARNING +slicer: slicer cannot measure a backend's CPU, so busy_cpu does not apply to its backends; set by defaults\.busy_cpu and ignored there/)
    assert.doesNotMatch(r.out, /process: process cannot measure/, 'the process provider measures CPU')
  })

  it('check prints each backend\'s policies as serve resolves them: idle_timeout, ignore, busy_cpu, startup_grace, schedules with zones, max_awake, fast_lane', async (t) => {
    const tmp = tempDir()
    t.after(() => tmp.remove())
    const file = join(tmp.dir, 'p.yaml')
    writeFileSync(
      file,
      `listen: 127.0.0.1:${await freePort()}\nstate_dir: ${tmp.dir}/state\nmax_awake: 8\ndefaults: { idle_timeout: 10m, ignore: [{ user_agent: Uptime-Kuma }, { path: /healthz, method: HEAD }] }\nproviders:\n  process:\n    max_awake: 2\n    apps:\n` +
        (await app('office', ', busy_cpu: 10%, startup_grace: 30s, awake_during: "Mon-Fri 08:00-18:00 Europe/Berlin", asleep_during: "Sat-Sun 00:00-24:00", ignore: []')) +
        (await app('plain', ', idle_timeout: 90s')) +
        (await app('pinned', ', always_on: true')),
    )
    const r = cli('check', '--config', file)
    const zone = new Intl.DateTimeFormat().resolvedOptions().timeZone
    const line = (name: string) => r.out.split('\n').find((l) => l.includes(`process: ${name}: `) && l.includes('fast_lane')) ?? ''
    assert.equal(line('office'), `ok       process: office: idle_timeout 10m; ignore: none; busy_cpu 10%; startup_grace 30s; awake_during "Mon-Fri 08:00-18:00 Europe/Berlin"; asleep_during "Sat-Sun 00:00-24:00" (${zone}); max_awake process (2), global (8); fast_lane off`, r.out)
    assert.equal(line('plain'), 'ok       process: plain: idle_timeout 90s; ignore: 2 rules (503 while asleep); busy_cpu off; startup_grace 90s; awake_during none; asleep_during none; max_awake process (2), global (8); fast_lane off', r.out)
    assert.match(line('pinned'), /^ok +process: pinned: always_on \(never put to sleep\); /, r.out)
    assert.match(r.out, /all checks passed/)
  })

  it('check warns that client ignore rules match nothing while the live snippet is older than 3', async (t) => {
    const tmp = tempDir()
    t.after(() => tmp.remove())
    const file = join(tmp.dir, 'r.yaml')
    const listen = `127.0.0.1:${await freePort()}`
    writeFileSync(
      file,
      `listen: ${listen}\nstate_dir: ${tmp.dir}/state\ndefaults: { ignore: [{ client: 10.0.0.0/8, path: /healthz }] }\nproviders:\n  process:\n    apps:\n      - { name: a, hosts: [a.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}" }, port: ${await freePort()}, stdout: "null" }\n`,
    )
    const before = cli('check', '--config', file)
    assert.match(before.out, /ok +ignore: client rules \(defaults\.ignore\) match only requests from snippet version 3 \(or 4\); no live snippet seen/)
    const sidecar = await startSidecarProcess(file)
    t.after(() => stopSidecarProcess(sidecar))
    // Caddy with snippet 2 in front: its forward_auth call wakes the app and is authorised.
    const woken = await request(`http://${listen}/_relight/auth`, { headers: { host: 'a.localhost', 'x-relight-snippet': '2', 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/' } })
    await woken.body.dump()
    assert.equal(woken.statusCode, 200)
    const r = spawnSync(process.execPath, [MAIN, 'check', '--config', file], { encoding: 'utf8', timeout: 60_000 })
    assert.match(r.stdout, /WARNING +ignore: client rules \(defaults\.ignore\) match only requests from snippet version 3 \(or 4\), and Caddy uses version 2: they match nothing until it is replaced/, r.stdout)
  })

  it("check warns about a client-only ignore rule and a rule matching everything, and names an app with fast_lane: on but no fast_lane_dir", async (t) => {
    const tmp = tempDir()
    t.after(() => tmp.remove())
    const file = join(tmp.dir, 'r.yaml')
    writeFileSync(
      file,
      `listen: 127.0.0.1:${await freePort()}\nstate_dir: ${tmp.dir}/state\ndefaults: { ignore: [{ client: 10.0.0.0/8 }] }\nproviders:\n  process:\n    apps:\n` +
        (await app('a', ', ignore: [{ path: / }]')) +
        (await app('fast', ', fast_lane: on')),
    )
    const r = cli('check', '--config', file)
    assert.match(r.out, /WARNING +defaults\.ignore: the rule \{ client: 10\.0\.0\.0\/8 \} has only client: every request from 10\.0\.0\.0\/8 is ignored, real users behind it/, r.out)
    assert.match(r.out, /WARNING +process: a: ignore: the rule \{ path: \/ \} matches every request/, r.out)
    assert.match(r.out, /PROBLEM +fast_lane: on for process: fast, but fast_lane_dir \(top level\) is not set/, r.out)
    assert.equal(r.code, 1)
  })

  it('check says why fast_lane is on but inactive for a backend, and warns when the lane can open for none', async (t) => {
    const tmp = tempDir()
    t.after(() => tmp.remove())
    const file = join(tmp.dir, 'r.yaml')
    const head = `listen: 127.0.0.1:${await freePort()}\nstate_dir: ${tmp.dir}/state\nfast_lane_dir: ${tmp.dir}/awake\ndefaults: { fast_lane: on, ignore: [{ path: /healthz, method: HEAD }] }\nproviders:\n  process:\n    apps:\n`
    // defaults.ignore with defaults.fast_lane: every app keeps the forward_auth lane
    writeFileSync(file, head + (await app('a', '')) + (await app('wild', ', ignore: []', '"*.wild.localhost"')))
    const r = cli('check', '--config', file)
    const line = (out: string, name: string) => out.split('\n').find((l) => l.includes(`process: ${name}: `) && l.includes('fast_lane')) ?? ''
    assert.match(line(r.out, 'a'), /; fast_lane on \(inactive: it has ignore rules \(decided per request by the sidecar\)\)$/, r.out)
    assert.match(line(r.out, 'wild'), /; fast_lane on \(inactive: no exact host \(a wildcard, non-canonical or stateful host cannot be flagged\)\)$/, r.out)
    assert.match(r.out, /WARNING +fast_lane: on for 2 backend\(s\), but none of them can take the fast lane \(it has ignore rules .*; no exact host .*\): every request goes through forward_auth/, r.out)
    // one app that can take it: no warning, a plain "on"
    writeFileSync(file, head + (await app('a', '')) + (await app('b', ', ignore: []')))
    const ok = cli('check', '--config', file)
    assert.match(line(ok.out, 'b'), /; fast_lane on$/, ok.out)
    assert.match(line(ok.out, 'a'), /; fast_lane on \(inactive: it has ignore rules/, ok.out)
    assert.doesNotMatch(ok.out, /none of them can take the fast lane/, ok.out)
  })

  it("check keeps the snippet-version paragraph short once the live snippet is current", async (t) => {
    const tmp = tempDir()
    t.after(() => tmp.remove())
    const file = join(tmp.dir, 'r.yaml')
    const listen = `127.0.0.1:${await freePort()}`
    writeFileSync(
      file,
      `listen: ${listen}\naccess_log: 127.0.0.1:${await freePort()}\nstate_dir: ${tmp.dir}/state\nproviders:\n  process:\n    apps:\n      - { name: a, hosts: [a.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}" }, port: ${await freePort()}, stdout: "null" }\n`,
    )
    assert.match(cli('check', '--config', file).out, /Version 1 must be replaced/, 'no live snippet: the whole explanation')
    const sidecar = await startSidecarProcess(file)
    t.after(() => stopSidecarProcess(sidecar))
    const call = await request(`http://${listen}/_relight/auth`, { headers: { host: 'a.localhost', 'x-relight-snippet': '4', 'x-relight-request': 'GET /', 'x-relight-client': '127.0.0.1:5000', 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/' } })
    await call.body.dump()
    assert.equal(call.statusCode, 200)
    const r = spawnSync(process.execPath, [MAIN, 'check', '--config', file], { encoding: 'utf8', timeout: 60_000 })
    assert.match(r.stdout, /ok +access_log: requests count in flight through the live snippet \(version 4, current\)/, r.stdout)
    assert.doesNotMatch(r.stdout, /Version 1 must be replaced/, r.stdout)
    // plain `import relight` from the current snippet file (version 4) reports 3: not outdated
    const plain = await request(`http://${listen}/_relight/auth`, { headers: { host: 'a.localhost', 'x-relight-snippet': '3', 'x-relight-request': 'GET /', 'x-relight-client': '127.0.0.1:5000', 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/' } })
    await plain.body.dump()
    const r3 = spawnSync(process.execPath, [MAIN, 'check', '--config', file], { encoding: 'utf8', timeout: 60_000 })
    assert.match(r3.stdout, /ok +live snippet: Caddy's forward_auth calls come from snippet version 3 \(plain import relight: the current snippet file, version 4, still reports its relight as 3; only relight_fast reports 4\), up to date/, r3.stdout)
    assert.match(r3.stdout, /ok +access_log: requests count in flight through the live snippet \(version 3, current: snippet file 4's relight reports as 3\)/, r3.stdout)
  })

  it("check trusts the flag directory relight_fast names only from Caddy's unix socket, bounded, and says where it came from", async (t) => {
    // Over a TCP listen any local user can claim snippet 4 and name a directory: check must not
    // report it as Caddy's (it once printed "Caddy passes /evil as the flag directory").
    const tmp = tempDir()
    t.after(() => tmp.remove())
    const appLine = async () => `      - { name: a, hosts: [a.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}" }, port: ${await freePort()}, stdout: "null" }\n`
    const lane = join(tmp.dir, 'awake')
    const agents = new Map<string, Agent>()
    t.after(() => Promise.all([...agents.values()].map((a) => a.close())))
    const through = (via: { socketPath?: string }) => {
      if (via.socketPath === undefined) return {}
      const agent = agents.get(via.socketPath) ?? new Agent({ connect: { socketPath: via.socketPath } })
      agents.set(via.socketPath, agent)
      return { dispatcher: agent }
    }
    const call = (dir: string, via: { origin: string; socketPath?: string }) =>
      request(`${via.origin}/_relight/auth`, {
        ...through(via),
        headers: { host: 'a.localhost', 'x-relight-snippet': '4', 'x-relight-fast-dir': dir, 'x-relight-request': 'GET /', 'x-relight-client': '127.0.0.1:5000', 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/' },
      }).then(async (r) => {
        await r.body.dump()
        assert.equal(r.statusCode, 200)
      })
    const health = async (via: { origin: string; socketPath?: string }) => {
      const r = await request(`${via.origin}/_relight/healthz`, through(via))
      return (await r.body.json()) as { fast_lane_dirs: string[]; fast_lane_dirs_unproven: number }
    }

    const tcpFile = join(tmp.dir, 'tcp.yaml')
    const listen = `127.0.0.1:${await freePort()}`
    writeFileSync(tcpFile, `listen: ${listen}\nstate_dir: ${tmp.dir}/state-tcp\nfast_lane_dir: ${lane}\ndefaults: { fast_lane: on }\nproviders:\n  process:\n    apps:\n${await appLine()}`)
    const tcp = await startSidecarProcess(tcpFile)
    t.after(() => stopSidecarProcess(tcp))
    await call('/evil', { origin: `http://${listen}` })
    const told = await health({ origin: `http://${listen}` })
    assert.deepEqual([told.fast_lane_dirs, told.fast_lane_dirs_unproven], [[], 1])
    const r = spawnSync(process.execPath, [MAIN, 'check', '--config', tcpFile], { encoding: 'utf8', timeout: 60_000 })
    assert.doesNotMatch(r.stdout, /passes \/evil/, r.stdout)
    assert.match(r.stdout, /UNCHECKED +live relight_fast: 1 relight_fast call\(s\) named a flag directory over the TCP listen 127\.0\.0\.1:\d+, where any local user can send that header/, r.stdout)
    await stopSidecarProcess(tcp)

    // Through a unix-socket listen (only the sidecar's user and socket_group can open it): recorded,
    // at most 4 directories of at most 1024 characters, the most recently named first.
    const unixFile = join(tmp.dir, 'unix.yaml')
    const sock = join(tmp.dir, 'sidecar.sock')
    writeFileSync(unixFile, `listen: unix:${sock}\nstate_dir: ${tmp.dir}/state-unix\nfast_lane_dir: ${lane}\ndefaults: { fast_lane: on }\nproviders:\n  process:\n    apps:\n${await appLine()}`)
    const unix = await startSidecarProcess(unixFile)
    t.after(() => stopSidecarProcess(unix))
    const via = { origin: 'http://localhost', socketPath: sock }
    // The right directory: proven live, so the static line does not call it uncheckable.
    await call(lane, via)
    const proven = spawnSync(process.execPath, [MAIN, 'check', '--config', unixFile], { encoding: 'utf8', timeout: 60_000 })
    assert.match(proven.stdout, new RegExp(`ok +live relight_fast: Caddy passes fast_lane_dir ${lane} as the flag directory`), proven.stdout)
    assert.match(proven.stdout, /UNCHECKED +fast_lane: that Caddy shares this network namespace \(the connection check reads this \/proc\/net\/tcp\) cannot be checked from here\n/, proven.stdout)
    assert.doesNotMatch(proven.stdout, /passes this fast_lane_dir to relight_fast cannot be checked/, proven.stdout)
    for (let i = 0; i < 10; i++) await call(`/wrong/${i}`, via)
    await call(`/${'x'.repeat(1025)}`, via)
    await call('/wrong/0', via)
    const seen = await health(via)
    assert.deepEqual(seen.fast_lane_dirs, ['/wrong/0', '/wrong/9', '/wrong/8', '/wrong/7'])
    assert.equal(seen.fast_lane_dirs_unproven, 1)
    const u = spawnSync(process.execPath, [MAIN, 'check', '--config', unixFile], { encoding: 'utf8', timeout: 60_000 })
    assert.match(u.stdout, new RegExp(`PROBLEM +live relight_fast: Caddy passes /wrong/0, /wrong/9, /wrong/8, /wrong/7 as the flag directory, not fast_lane_dir ${lane}, as relight_fast's forward_auth calls through the unix socket listen ${sock} said`), u.stdout)
    // Compared live: the static line no longer says the directory cannot be checked.
    assert.match(u.stdout, /UNCHECKED +fast_lane: that Caddy shares this network namespace \(the connection check reads this \/proc\/net\/tcp\) cannot be checked from here\n/, u.stdout)
    assert.doesNotMatch(u.stdout, /passes this fast_lane_dir to relight_fast cannot be checked/, u.stdout)

  })

  it('a SIGTERM during start-up leaves no child behind', async (t) => {
    const tmp = tempDir()
    t.after(() => tmp.remove())
    const file = join(tmp.dir, 'r.yaml')
    // always_on: start-up waits for this app, which takes 10 s to listen
    writeFileSync(
      file,
      `listen: 127.0.0.1:${await freePort()}\nproviders:\n  process:\n    apps:\n      - { name: slow, hosts: [slow.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", SPAWN_GRANDCHILD: "1", LISTEN_DELAY_MS: "10000" }, port: ${await freePort()}, always_on: true, stdout: "file:${tmp.dir}/slow.out" }\n`,
    )
    const child = spawn(process.execPath, [MAIN, 'serve', '--config', file, '--log-format', 'json'], { stdio: 'ignore' })
    t.after(() => stopChild(child))
    const grandchild = Number(await until(() => /grandchild (\d+)/.exec(readText(`${tmp.dir}/slow.out`))?.[1], 'the app to start'))
    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
    await until(() => !pidAlive(grandchild), 'the app group to be gone', 5000)
  })

  it('a refused serve (a squatted app port, a config error) still empties fast_lane_dir of a dead sidecar\'s flags', async () => {
    const tmp = tempDir()
    const { createServer } = await import('node:net')
    const squatter = createServer()
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r))
    const appPort = (squatter.address() as { port: number }).port
    const laneDir = join(tmp.dir, 'awake')
    const flag = join(laneDir, 'app.localhost', `127.0.0.1:${appPort}`)
    const plant = () => {
      mkdirSync(join(laneDir, 'app.localhost'), { recursive: true })
      symlinkSync(`/proc/${2 ** 22 + 4321}/cmdline`, flag) // the dead sidecar's pid (above any pid_max here)
    }
    const gone = () => {
      try {
        lstatSync(flag)
        return false
      } catch {
        return true
      }
    }
    const file = join(tmp.dir, 'r.yaml')
    const good = `listen: 127.0.0.1:${await freePort()}\nfast_lane_dir: ${laneDir}\ndefaults: { fast_lane: on }\nproviders:\n  process:\n    apps:\n      - { name: app, hosts: [app.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}" }, port: ${appPort}, stdout: "file:${tmp.dir}/app.out" }\n`
    // A local user holds the app's port: serve refuses (A3), and must not leave the flag.
    plant()
    writeFileSync(file, good)
    const squatted = spawnSync(process.execPath, [MAIN, 'serve', '--config', file, '--log-format', 'json'], { encoding: 'utf8', timeout: 60_000 })
    assert.equal(squatted.status, 1, squatted.stdout + squatted.stderr)
    assert.match(squatted.stderr, /cannot start: .*in use by another program/)
    assert.ok(gone(), 'the dead sidecar\'s flag is removed by a start refused for a squatted port')
    // A configuration edited into an error: the flag goes too.
    plant()
    writeFileSync(file, `${good}no_such_key: 1\n`)
    const invalid = spawnSync(process.execPath, [MAIN, 'serve', '--config', file, '--log-format', 'json'], { encoding: 'utf8', timeout: 60_000 })
    assert.equal(invalid.status, 1, invalid.stdout + invalid.stderr)
    assert.match(invalid.stderr, /invalid configuration/)
    assert.ok(gone(), 'the dead sidecar\'s flag is removed by a start refused for a configuration error')
    squatter.close()
    tmp.remove()
  })

  it('serve exits 1 and leaves no child behind when it cannot listen', async () => {
    const tmp = tempDir()
    const { createServer } = await import('node:net')
    const blocker = createServer()
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r))
    const taken = (blocker.address() as { port: number }).port
    const appPort = await freePort()
    const file = join(tmp.dir, 'r.yaml')
    writeFileSync(file, `listen: 127.0.0.1:${taken}\nproviders:\n  process:\n    apps:\n      - { name: w, hosts: [w.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}" }, port: ${appPort}, always_on: true, stdout: "file:${tmp.dir}/w.out" }\n`)
    const r = spawnSync(process.execPath, [MAIN, 'serve', '--config', file, '--log-format', 'json'], { encoding: 'utf8', timeout: 60_000 })
    blocker.close()
    assert.equal(r.status, 1, r.stdout + r.stderr)
    assert.match(r.stderr, new RegExp(`^relight-sidecar: cannot start: listen: 127\\.0\\.0\\.1:${taken} is in use by another program \\(pid ${process.pid}, `))
    assert.doesNotMatch(r.stdout + r.stderr, /\n\s+at /, 'no stack trace')
    const { connect } = await import('node:net')
    const open = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: appPort })
      s.once('connect', () => (s.destroy(), resolve(true)))
      s.once('error', () => resolve(false))
    })
    assert.equal(open, false, 'the always_on app was stopped')
    tmp.remove()
  })
})

describe('relight-sidecar serve, with Caddy in front', { skip: caddySkip() }, () => {
  let tmp: ReturnType<typeof tempDir>
  let caddy: RunningCaddy
  let config: string
  let sidecarPort: number

  before(async () => {
    tmp = tempDir()
    sidecarPort = await freePort()
    const [p1, p2] = [await freePort(), await freePort()]
    config = join(tmp.dir, 'relight.yaml')
    writeFileSync(
      config,
      `listen: 127.0.0.1:${sidecarPort}
access_log: unix:${tmp.dir}/access.sock
providers:
  process:
    apps:
      - name: web
        hosts: [web.localhost]
        command: [${process.execPath}, ${APP}]
        env: { PORT: "{{port}}", NAME: web, SPAWN_GRANDCHILD: "1" }
        port: ${p1}
        stdout: file:${tmp.dir}/web.out
      - name: stubborn
        hosts: [stubborn.localhost]
        command: [${process.execPath}, ${APP}]
        env: { PORT: "{{port}}", NAME: stubborn, IGNORE_TERM: "1" }
        port: ${p2}
        grace_period: 300ms
        stdout: "null"
`,
    )
  })
  after(async () => {
    await caddy?.close()
    tmp?.remove()
  })

  it('answers 502 while the sidecar is down, recovers when it is back, and leaves no process behind', async (t) => {
    const first = serve(config)
    t.after(() => stopChild(first.child)) // on failure too: its apps are in their own process groups
    await first.listening
    caddy = await startCaddy({ sidecar: `127.0.0.1:${sidecarPort}`, accessLog: `unix/${tmp.dir}/access.sock` })
    const get = async (host: string) => {
      const res = await request(caddy.url, { headers: { host } })
      return { status: res.statusCode, body: await res.body.text() }
    }
    const web = await get('web.localhost')
    assert.equal(web.status, 200)
    const stubborn = await get('stubborn.localhost')
    assert.equal(stubborn.status, 200)
    const pids = [web.body, stubborn.body].map((b) => Number(/pid (\d+)/.exec(b)?.[1]))
    const grandchild = Number(await until(() => /grandchild (\d+)/.exec(readFileSync(`${tmp.dir}/web.out`, 'utf8'))?.[1], 'the grandchild pid'))
    assert.ok([...pids, grandchild].every(pidAlive))

    first.child.kill('SIGTERM')
    const code = await new Promise<number | null>((r) => first.child.once('exit', (c) => r(c)))
    assert.equal(code, 0, first.output())
    for (const pid of [...pids, grandchild]) assert.equal(pidAlive(pid), false, `pid ${pid} must be gone after shutdown`)
    assert.match(first.output(), /process ignored stop signal; killing/)

    assert.equal((await get('web.localhost')).status, 502, 'Caddy answers 502 while the sidecar is down')

    const second = serve(config)
    try {
      await second.listening
      const back = await get('web.localhost')
      assert.equal(back.status, 200, 'traffic recovers when the sidecar is back')
    } finally {
      await stopChild(second.child)
    }
  })
})
