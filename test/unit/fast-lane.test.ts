/** The fast lane's flags (core/fast-lane.ts) and its settings; through Caddy: test/integration/fast-lane-caddy.test.ts. */
import assert from 'node:assert/strict'
import { chmodSync, chownSync, existsSync, renameSync, lstatSync, mkdirSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer, type Server, connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { parseConfig } from '../../sidecar/config/load.js'
import { FastLane, removeStaleFlags, pidMaxProblem, laneHostProblem, laneUpstreamProblem, pidNamespaceProblem } from '../../sidecar/core/fast-lane.js'
import { readSettings } from '../../sidecar/core/settings.js'
import { Registry } from '../../sidecar/core/registry.js'
import pino from 'pino'
import { type MemoryBackend, MemoryProvider } from '../fakes/memory-provider.js'
import { okUpstream } from '../helpers/ok-upstream.js'
import { tempDir } from '../helpers/net.js'

describe('fast_lane setting', () => {
  it('is read from defaults (on/off, YAML booleans) and off by default', () => {
    assert.equal(parseConfig('listen: 127.0.0.1:0\n', 't').defaults.fast_lane, false)
    assert.equal(parseConfig('listen: 127.0.0.1:0\nfast_lane_dir: /run/x\ndefaults: { fast_lane: on }\n', 't').defaults.fast_lane, true)
    assert.equal(parseConfig('listen: 127.0.0.1:0\nfast_lane_dir: /run/x\ndefaults: { fast_lane: true }\n', 't').defaults.fast_lane, true)
    assert.equal(parseConfig('listen: 127.0.0.1:0\ndefaults: { fast_lane: off }\n', 't').defaults.fast_lane, false)
  })

  it('a bad value or a missing fast_lane_dir is an error naming the key', () => {
    assert.throws(() => parseConfig('listen: 127.0.0.1:0\nfast_lane_dir: /run/x\ndefaults: { fast_lane: yes please }\n', 't'), /fast_lane/)
    assert.throws(() => parseConfig('listen: 127.0.0.1:0\ndefaults: { fast_lane: on }\n', 't'), /fast_lane_dir/)
    assert.throws(() => parseConfig('listen: 127.0.0.1:0\nfast_lane_dir: relative/dir\n', 't'), /fast_lane_dir/)
  })

  // Review item 6: the post-removal wait was a fixed 500 ms.
  it('fast_lane_drain: 2s by default, set in defaults or by label through the one table, bounded', () => {
    assert.equal(parseConfig('listen: 127.0.0.1:0\n', 't').defaults.fast_lane_drain, 2000)
    assert.equal(parseConfig('listen: 127.0.0.1:0\ndefaults: { fast_lane_drain: 5s }\n', 't').defaults.fast_lane_drain, 5000)
    assert.throws(() => parseConfig('listen: 127.0.0.1:0\ndefaults: { fast_lane_drain: 10ms }\n', 't'), /fast_lane_drain/)
    const problems: string[] = []
    const read = (text: string) => readSettings((k) => (k === 'fast_lane_drain' ? text : undefined), ['stop'], (key, t, expected) => problems.push(`${key}=${t}: ${expected}`))
    assert.equal(read('3s').fast_lane_drain, 3000)
    assert.equal(read('soon').fast_lane_drain, undefined)
    assert.match(problems.join('\n'), /fast_lane_drain=soon/)
  })

  it('labels, tags and annotations read it through the one table', () => {
    const problems: string[] = []
    const read = (text: string) => readSettings((k) => (k === 'fast_lane' ? text : undefined), ['stop'], (key, t, expected) => problems.push(`${key}=${t}: ${expected}`))
    assert.equal(read('on').fast_lane, true)
    assert.equal(read('off').fast_lane, false)
    assert.equal(read('maybe').fast_lane, undefined)
    assert.deepEqual(problems, ['fast_lane=maybe: on or off'])
  })
})

describe('fast lane flags', () => {
  const tmp = tempDir('relight-lane-')
  const dir = join(tmp.dir, 'awake')
  after(() => tmp.remove())

  it('only canonical exact host names and file-safe upstreams get a flag', () => {
    for (const bad of ['..', '.', 'a/b', '../x', 'A.example', 'x\0.example', '*.example', 'ex ample', `${'a'.repeat(64)}.example`, 'a'.repeat(300), 'bücher.example', 'x.example.', 'x.example:80', '']) {
      assert.notEqual(laneHostProblem(bad), undefined, JSON.stringify(bad))
    }
    for (const good of ['app.example', 'xn--bcher-kva.example', 'a-b.c']) assert.equal(laneHostProblem(good), undefined, good)
    for (const bad of ['..', 'a/b:80', '127.0.0.1', 'x\0:1', '']) assert.notEqual(laneUpstreamProblem(bad), undefined, JSON.stringify(bad))
    assert.equal(laneUpstreamProblem('[::1]:8080'), undefined)
  })

  it('writes links into the sidecar’s /proc entry, one flag per host, removals first, refcounted', () => {
    const lane = new FastLane({ dir })
    mkdirSync(join(dir, 'stale.example'), { recursive: true })
    writeFileSync(join(dir, 'stale.example', '127.0.0.1:1'), '')
    lane.reset()
    assert.deepEqual(readdirSync(dir), [], 'emptied at start')
    const a = {}
    const b = {}
    lane.set(a, [{ host: 'app.example', upstream: '127.0.0.1:8080' }, { host: 'BAD.example', upstream: '127.0.0.1:8080' }])
    const flag = join(dir, 'app.example', '127.0.0.1:8080')
    assert.ok(lstatSync(flag).isSymbolicLink())
    assert.equal(readlinkSync(flag), `/proc/${process.pid}/cmdline`)
    assert.deepEqual(readdirSync(dir), ['app.example'], 'the bad spelling is left out')
    // a new upstream replaces the old one: never two flags for one host
    lane.set(a, [{ host: 'app.example', upstream: '127.0.0.1:9090' }])
    assert.deepEqual(readdirSync(join(dir, 'app.example')), ['127.0.0.1:9090'])
    // two owners of one flag (a reload's old and new backend): it stays until both let go
    lane.set(b, [{ host: 'app.example', upstream: '127.0.0.1:9090' }])
    lane.set(a, [])
    assert.ok(existsSync(join(dir, 'app.example', '127.0.0.1:9090')))
    lane.set(b, [])
    assert.deepEqual(readdirSync(dir), [], 'the host directory goes with its last flag')
    lane.set(a, [{ host: 'x.example', upstream: '127.0.0.1:1' }])
    lane.clear()
    assert.deepEqual(readdirSync(dir), [])
  })

  it('refuses a flag directory that is a link or can be swapped by anyone', () => {
    const open = join(tmp.dir, 'open')
    mkdirSync(open)
    chmodSync(open, 0o777) // every user, no sticky bit
    assert.throws(() => new FastLane({ dir: join(open, 'awake') }).reset(), /writable by every user/)
    symlinkSync(dir, join(tmp.dir, 'link'))
    assert.throws(() => new FastLane({ dir: join(tmp.dir, 'link') }).reset(), /symbolic link/)
  })

  // Review item 2: a sidecar that is pid 1 of its container pointed its flags at /proc/1/cmdline,
  // which in Caddy's container is Caddy's own init: the lane opened and never dangled.
  it('refuses to start the lane in a pid namespace of its own unless Caddy sharing it is acknowledged', () => {
    const fake = (ns: string, nspid: string) => {
      const proc = join(tmp.dir, `proc-${ns.replace(/\W/g, '')}-${nspid.replace(/\W/g, '_')}`)
      mkdirSync(join(proc, 'self', 'ns'), { recursive: true })
      symlinkSync(ns, join(proc, 'self', 'ns', 'pid'))
      writeFileSync(join(proc, 'self', 'status'), `Name:\tnode\nNSpid:\t${nspid}\n`)
      return proc
    }
    const initial = 'pid:[4026531836]'
    assert.equal(pidNamespaceProblem(fake(initial, '4242'), 4242), undefined)
    assert.match(pidNamespaceProblem(fake(initial, '4242\t1'), 4242) ?? '', /own pid namespace/)
    assert.match(pidNamespaceProblem(fake('pid:[4026532313]', '1'), 1) ?? '', /own pid namespace.*pid 1/)
    assert.match(pidNamespaceProblem(fake('pid:[4026532314]', '7'), 7) ?? '', /own pid namespace/, 'not pid 1 (tini) but a namespace of its own')
    const proc = fake('pid:[4026532315]', '1')
    assert.throws(() => new FastLane({ dir: join(tmp.dir, 'ns-awake'), proc, pid: 1 }).reset(), /fast_lane_shared_pid_namespace: true/)
    assert.equal(existsSync(join(tmp.dir, 'ns-awake')), false, 'refused before anything is made')
    new FastLane({ dir: join(tmp.dir, 'ns-awake'), proc, pid: 1, sharedPidNamespace: true }).reset()
    assert.equal(parseConfig('listen: 127.0.0.1:0\nfast_lane_dir: /run/x\nfast_lane_shared_pid_namespace: true\n', 't').fast_lane_shared_pid_namespace, true)
    assert.throws(() => parseConfig('listen: 127.0.0.1:0\nfast_lane_shared_pid_namespace: maybe\n', 't'), /fast_lane_shared_pid_namespace/)
  })

  it('detects a real pid namespace of its own (unshare --pid, as root)', { skip: process.getuid?.() !== 0 || !existsSync('/usr/bin/unshare') ? 'needs root and unshare' : false }, () => {
    const mod = new URL('../../sidecar/core/fast-lane.js', import.meta.url).href
    const run = (args: string[]) =>
      spawnSync('/usr/bin/unshare', [...args, process.execPath, '--input-type=module', '-e', `const m = await import(${JSON.stringify(mod)}); console.log(JSON.stringify(m.pidNamespaceProblem() ?? null))`], { encoding: 'utf8', timeout: 20_000 })
    const own = run(['--pid', '--fork', '--mount-proc'])
    assert.equal(own.status, 0, own.stderr)
    assert.match(own.stdout, /own pid namespace.*pid 1/)
    const same = spawnSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(mod)}); console.log(JSON.stringify(m.pidNamespaceProblem() ?? null))`], { encoding: 'utf8', timeout: 20_000 })
    assert.equal(same.stdout.trim(), readlinkSync('/proc/self/ns/pid') === 'pid:[4026531836]' ? 'null' : same.stdout.trim())
  })

  // Review item 4: a parent owned by another user passed, and the sidecar then followed that
  // user's links (deleting, chmod-ing and renaming into any directory).
  it('refuses a flag directory below one another user owns or may write, follows no link, and is pinned', { skip: process.getuid?.() !== 0 ? 'needs root (chown)' : false }, () => {
    const theirs = join(tmp.dir, 'theirs')
    mkdirSync(theirs, { mode: 0o755 })
    chownSync(theirs, 65534, 65534)
    assert.throws(() => new FastLane({ dir: join(theirs, 'awake') }).reset(), /theirs \(above .*\) belongs to uid 65534/)
    assert.throws(() => new FastLane({ dir: join(theirs, 'deeper', 'awake') }).reset(), /belongs to uid 65534/, 'any ancestor, not only the parent')
    const group = join(tmp.dir, 'group')
    mkdirSync(join(group, 'sub'), { recursive: true })
    chmodSync(group, 0o775)
    assert.throws(() => new FastLane({ dir: join(group, 'sub', 'awake') }).reset(), /writable by its group without the sticky bit/)
    // a link another user owns, in a sticky directory, to a root directory: judged by the link's
    // owner, not its target (its owner could re-point it to a tree of theirs at any time)
    const sticky = join(tmp.dir, 'sticky')
    mkdirSync(sticky)
    chmodSync(sticky, 0o1777)
    const good = join(tmp.dir, 'good')
    mkdirSync(good, { mode: 0o755 })
    symlinkSync(good, join(sticky, 'link'))
    assert.equal(new FastLane({ dir: join(sticky, 'link', 'own-awake') }).reset(), undefined, 'a link of this user (root here) is fine')
    symlinkSync(good, join(sticky, 'their-link'))
    spawnSync('chown', ['-h', '65534:65534', join(sticky, 'their-link')])
    assert.equal(lstatSync(join(sticky, 'their-link')).uid, 65534)
    assert.throws(() => new FastLane({ dir: join(sticky, 'their-link', 'awake') }).reset(), /their-link \(above .*\) is a symbolic link owned by uid 65534/)
    assert.equal(existsSync(join(good, 'awake')), false, 'nothing made through their link')
    // a host directory swapped for a link is refused before anything follows it
    const pinDir = join(tmp.dir, 'pin', 'awake')
    const lane = new FastLane({ dir: pinDir })
    lane.reset()
    const victim = join(tmp.dir, 'victim')
    mkdirSync(victim, { mode: 0o700 })
    writeFileSync(join(victim, 'precious'), 'x')
    symlinkSync(victim, join(pinDir, 'app.example'))
    assert.throws(() => lane.set({}, [{ host: 'app.example', upstream: '127.0.0.1:8080' }]), /symbolic link/)
    assert.deepEqual(readdirSync(victim), ['precious'])
    assert.equal(lstatSync(victim).mode & 0o777, 0o700)
    // the directory renamed away and replaced: no write there
    renameSync(pinDir, `${pinDir}.old`)
    mkdirSync(pinDir)
    assert.throws(() => lane.set({}, [{ host: 'b.example', upstream: '127.0.0.1:8080' }]), /replaced since start/)
    assert.deepEqual(readdirSync(pinDir), [])
  })

  it('a flag directory others could write is refused and never walked; reset removes only the shape it makes, never recursively', () => {
    // Before: removeStaleFlags walked a 0777 directory by path, and reset() chmodded it and
    // removed whatever was planted with a recursive rm (as root: a tree swapped for a link mid-walk).
    const open = join(tmp.dir, 'open-lane')
    mkdirSync(join(open, 'app.example', 'nested'), { recursive: true })
    symlinkSync('/proc/999999999/cmdline', join(open, 'app.example', '127.0.0.1:1'))
    chmodSync(open, 0o777)
    assert.deepEqual(removeStaleFlags(open), [], 'left to reset(), which refuses it')
    assert.throws(() => new FastLane({ dir: open }).reset(), /open-lane is writable by every user \(mode 777\): others may have planted flags/)
    assert.deepEqual(readdirSync(join(open, 'app.example')).sort(), ['127.0.0.1:1', 'nested'], 'nothing walked or removed')
    chmodSync(open, 0o775)
    assert.throws(() => new FastLane({ dir: open }).reset(), /writable by its group/)
    // the sidecar's own directory (0755) holding what it never makes: a nested directory, a host directory others may write
    const mine = join(tmp.dir, 'nested-lane')
    mkdirSync(join(mine, 'app.example', 'deep'), { recursive: true })
    chmodSync(mine, 0o755)
    assert.throws(() => new FastLane({ dir: mine }).reset(), /app\.example\/deep is a directory: the sidecar never makes one there/)
    assert.ok(existsSync(join(mine, 'app.example', 'deep')))
    const loose = join(tmp.dir, 'loose-lane')
    mkdirSync(join(loose, 'app.example'), { recursive: true })
    chmodSync(loose, 0o755)
    chmodSync(join(loose, 'app.example'), 0o777)
    assert.throws(() => new FastLane({ dir: loose }).reset(), /app\.example belongs to uid \d+ with mode 777: not a host directory the sidecar made/)
    // what the sidecar made is emptied as before
    const ok = join(tmp.dir, 'ok-lane')
    const lane = new FastLane({ dir: ok })
    lane.reset()
    lane.set({}, [{ host: 'app.example', upstream: '127.0.0.1:1' }])
    symlinkSync('/nowhere', join(ok, '.tmp-1-1'))
    new FastLane({ dir: ok }).reset()
    assert.deepEqual(readdirSync(ok), [])
  })

  // Review of issue 25: under umask 0 the missing parent was made 0777, and then refused.
  it('makes missing parents 0755 whatever the umask', () => {
    const dir = join(tmp.dir, 'umask0', 'run', 'awake')
    const old = process.umask(0)
    try {
      new FastLane({ dir }).reset()
    } finally {
      process.umask(old)
    }
    assert.equal(lstatSync(join(tmp.dir, 'umask0')).mode & 0o777, 0o755)
    assert.equal(lstatSync(join(tmp.dir, 'umask0', 'run')).mode & 0o777, 0o755)
  })

  it('removeStaleFlags: a dead, foreign, zombie or own pid loses its flags; a live sidecar of this user keeps them', () => {
    const proc = join(tmp.dir, 'proc')
    const stale = join(tmp.dir, 'stale')
    const fake = (pid: number, state: string) => {
      mkdirSync(join(proc, String(pid)), { recursive: true })
      writeFileSync(join(proc, String(pid), 'stat'), `${pid} (node) ${state} 1 1 1`)
    }
    fake(100, 'S') // another sidecar of this user, running
    fake(101, 'Z') // a zombie: the sidecar died, its parent did not reap it yet
    fake(102, 'S') // a process of another user that took a dead sidecar's pid
    const root = process.getuid?.() === 0
    if (root) chownSync(join(proc, '102'), 65534, 65534)
    const flag = (host: string, pid: number) => {
      mkdirSync(join(stale, host), { recursive: true })
      symlinkSync(`${proc}/${pid}/cmdline`, join(stale, host, '127.0.0.1:1'))
    }
    flag('live.example', 100)
    flag('zombie.example', 101)
    flag('foreign.example', 102)
    flag('gone.example', 103)
    flag('self.example', process.pid)
    mkdirSync(join(stale, 'plain.example'))
    writeFileSync(join(stale, 'plain.example', 'not-a-link'), '')
    const removed = removeStaleFlags(stale, { proc })
    const expected = ['gone.example/127.0.0.1:1', 'self.example/127.0.0.1:1', 'zombie.example/127.0.0.1:1', ...(root ? ['foreign.example/127.0.0.1:1'] : [])].sort()
    assert.deepEqual(removed, expected)
    assert.deepEqual(readdirSync(stale).sort(), ['live.example', 'plain.example', ...(root ? [] : ['foreign.example'])].sort(), 'emptied host directories go')
    assert.deepEqual(removeStaleFlags(join(tmp.dir, 'missing'), { proc }), [], 'no directory: nothing to do')
  })

  it('a host that is a stateful site gets no flag (its requests go to the site, through /auth)', async () => {
    const secret = Buffer.alloc(32, 1).toString('base64')
    const config = parseConfig(`fast_lane_dir: ${dir}\nresync_interval: 0s\ndefaults: { fast_lane: on }\nstateful:\n  - hosts: [app.localhost]\n    secret: "${secret}"\n    upstreams:\n      - { cidr: 127.0.0.0/8, host: localhost, port: 9 }\n`, 'test')
    const lane = new FastLane({ dir })
    lane.reset()
    const provider = new MemoryProvider([
      { id: 'app', hosts: ['app.localhost'], state: 'running', upstreams: ['127.0.0.1:39601'] },
      { id: 'other', hosts: ['other.localhost'], state: 'running', upstreams: ['127.0.0.1:39602'] },
    ])
    const registry = new Registry([provider], config, pino({ level: 'silent' }))
    registry.useFastLane(lane)
    try {
      await registry.start()
      assert.deepEqual(lane.flags(), ['other.localhost/127.0.0.1:39602'])
      assert.deepEqual(lane.onDisk(), ['other.localhost/127.0.0.1:39602'])
    } finally {
      registry.close()
      lane.clear()
    }
  })

  it('pidMaxProblem: a pid_max below 4194304 is named with what to do; a large or unreadable one is not', () => {
    const proc = join(tmp.dir, 'proc-pidmax')
    mkdirSync(join(proc, 'sys', 'kernel'), { recursive: true })
    writeFileSync(join(proc, 'sys', 'kernel', 'pid_max'), '32768\n')
    assert.match(pidMaxProblem(proc) ?? '', /^kernel\.pid_max is 32768: .*Restart=always.*socket_group.*kernel\.pid_max=4194304$/)
    writeFileSync(join(proc, 'sys', 'kernel', 'pid_max'), '4194304\n')
    assert.equal(pidMaxProblem(proc), undefined)
    assert.equal(pidMaxProblem(join(tmp.dir, 'no-proc')), undefined)
  })

  it('a flag of a process that is gone dangles', () => {
    const lane = new FastLane({ dir, pid: 2 ** 22 + 12345 }) // above any pid_max: never a process
    lane.set({}, [{ host: 'gone.example', upstream: '127.0.0.1:1' }])
    assert.equal(existsSync(join(dir, 'gone.example', '127.0.0.1:1')), false, 'stat follows the link and fails')
    assert.ok(lstatSync(join(dir, 'gone.example', '127.0.0.1:1')).isSymbolicLink())
    lane.clear()
  })

  describe('connections to an upstream', () => {
    let server: Server
    let port = 0
    const sockets: Socket[] = []
    before(async () => {
      server = createServer((s) => sockets.push(s))
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
      port = (server.address() as { port: number }).port
    })
    after(async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    })

    it('an open connection holds a sleep at most max_request_duration, and says so once per idle_timeout', async () => {
      const config = parseConfig(`fast_lane_dir: ${dir}\nmin_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { fast_lane: on, idle_timeout: 10s, max_request_duration: 60s }\n`, 'test')
      const lane = new FastLane({ dir })
      lane.reset()
      const provider = new MemoryProvider([{ id: 'app', hosts: ['app.localhost'], state: 'running', upstreams: [`127.0.0.1:${port}`] }])
      const clock = { now: 1_000_000 }
      const registry = new Registry([provider], config, pino({ level: 'silent' }), () => clock.now)
      registry.useFastLane(lane, 0)
      const refused: string[] = []
      registry.events.subscribe((e) => {
        if (e.type === 'sleep.refused') refused.push(e.reason)
      })
      const c = connect(port, '127.0.0.1') // anyone's idle socket to the upstream: no HTTP at all
      try {
        await new Promise((r) => c.once('connect', r))
        await registry.start()
        const app = registry.get('memory:app')
        assert.ok(app?.fastLaneOpen)
        clock.now += 20_000 // idle by its requests
        await registry.sweep()
        assert.equal(app.phase, 'running')
        assert.deepEqual(refused, ['connections: 1'], 'the hold is reported')
        clock.now += 1_000
        await registry.sweep()
        assert.deepEqual(refused, ['connections: 1'], 'not again within idle_timeout')
        clock.now += 11_000
        await registry.sweep()
        assert.deepEqual(refused, ['connections: 1', 'connections: 1'], 'again after idle_timeout')
        clock.now += 60_000 // past max_request_duration with no request seen
        await registry.sweep()
        clock.now += 11_000
        await registry.sweep()
        assert.equal(app.phase, 'asleep', 'the hold ended at max_request_duration')
        assert.deepEqual(provider.calls.sleep.length, 1)
      } finally {
        c.destroy()
        registry.close()
        lane.clear()
      }
    })

    // Review of issue 25: an abort during the drain's last (asynchronous) count, which found 0, was missed.
    it('a shutdown during the drain\'s connection read is not missed when the count is 0: nothing sleeps', async () => {
      const config = parseConfig(`fast_lane_dir: ${dir}\nmin_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { fast_lane: on, idle_timeout: 10s }\n`, 'test')
      let registry: Registry | undefined
      let reads = 0
      class ClosingLane extends FastLane {
        override async connectionsAsync(...upstreams: readonly string[]): Promise<number> {
          reads++
          const n = await super.connectionsAsync(...upstreams)
          registry?.close() // the sidecar shuts down while the tables are read
          return n
        }
      }
      const lane = new ClosingLane({ dir })
      lane.reset()
      const provider = new MemoryProvider([{ id: 'app', hosts: ['app.localhost'], state: 'running', upstreams: [`127.0.0.1:${port}`] }])
      const clock = { now: 1_000_000 }
      registry = new Registry([provider], config, pino({ level: 'silent' }), () => clock.now)
      registry.useFastLane(lane, 0)
      const events: string[] = []
      registry.events.subscribe((e) => {
        if (e.type.startsWith('sleep.')) events.push(`${e.type}${'reason' in e ? ` ${String(e.reason)}` : ''}`)
      })
      try {
        await registry.start()
        assert.ok(registry.get('memory:app')?.fastLaneOpen)
        clock.now += 20_000
        await registry.sweep()
        assert.equal(reads, 1)
        assert.deepEqual(provider.calls.sleep, [])
        assert.deepEqual(events.filter((e) => e.startsWith('sleep.done') || e.startsWith('sleep.failed')), [], 'neither slept nor tried to')
      } finally {
        registry.close()
        lane.clear()
      }
    })

    it('counts open client-side connections from /proc/net/tcp, not the listener nor closed ones', async () => {
      const lane = new FastLane({ dir })
      assert.equal(lane.connections(`127.0.0.1:${port}`), 0)
      const c = connect(port, '127.0.0.1')
      await new Promise((r) => c.once('connect', r))
      assert.equal(lane.connections(`127.0.0.1:${port}`), 1)
      assert.equal(lane.connections(`127.0.0.2:${port}`), 0, 'another address')
      // the drain's asynchronous read counts the same
      assert.equal(await lane.connectionsAsync(`127.0.0.1:${port}`), 1)
      assert.equal(await lane.connectionsAsync(`127.0.0.2:${port}`), 0)
      assert.equal(await lane.connectionsAsync(`127.0.0.1:${port}`, `127.0.0.2:${port}`), 1, 'several upstreams, one read')
      assert.equal(await lane.connectionsAsync(), 0)
      c.destroy()
      await new Promise((r) => c.once('close', r))
      for (const s of sockets) s.destroy()
      // the client side is gone at once (FIN_WAIT/TIME_WAIT are not counted)
      assert.equal(lane.connections(`127.0.0.1:${port}`), 0)
      assert.equal(await lane.connectionsAsync(`127.0.0.1:${port}`), 0)
    })
  })
})

describe('fast_lane on but kept in the forward_auth lane', () => {
  const tmp = tempDir('relight-lane-off-')
  const upstream = okUpstream()
  after(() => tmp.remove())

  it('the admin status says why: ignore rules, replicas, a wildcard host, no fast_lane_dir', async () => {
    const on = { fast_lane: true }
    const backends = (): MemoryBackend[] => [
      { id: 'plain', hosts: ['plain.example.com'], state: 'running', upstreams: [upstream.address], settings: on },
      { id: 'checked', hosts: ['checked.example.com'], state: 'running', upstreams: [upstream.address], settings: { ...on, ignore: [{ path: '/healthz' }] } },
      { id: 'replicas', hosts: ['replicas.example.com'], state: 'running', upstreams: [upstream.address, '127.0.0.1:9'], settings: on },
      { id: 'wild', hosts: ['*.wild.example.com'], state: 'running', upstreams: [upstream.address], settings: on },
      { id: 'off', hosts: ['off.example.com'], state: 'running', upstreams: [upstream.address] },
    ]
    const config = parseConfig('min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10m }\n', 't')
    const lane = new FastLane({ dir: join(tmp.dir, 'awake') })
    lane.reset()
    const registry = new Registry([new MemoryProvider(backends())], config, pino({ level: 'silent' }))
    registry.useFastLane(lane)
    const without = new Registry([new MemoryProvider(backends())], config, pino({ level: 'silent' }))
    try {
      await registry.start()
      await without.start()
      const off = (r: Registry, id: string) => r.get(`memory:${id}`)?.status().fast_lane_off
      assert.equal(registry.get('memory:plain')?.status().fast_lane, true)
      assert.equal(off(registry, 'plain'), undefined)
      assert.match(String(off(registry, 'checked')), /ignore rules/)
      assert.match(String(off(registry, 'replicas')), /^2 upstreams \(replicas/)
      assert.match(String(off(registry, 'wild')), /wildcard/)
      assert.equal(off(registry, 'off'), undefined, 'fast_lane off: nothing to explain')
      assert.equal(off(without, 'plain'), 'fast_lane_dir is not set')
    } finally {
      registry.close()
      without.close()
    }
  })
})
