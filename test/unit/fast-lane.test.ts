/** The fast lane's flags (core/fast-lane.ts) and its settings; through Caddy: test/integration/fast-lane-caddy.test.ts. */
import assert from 'node:assert/strict'
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer, type Server, connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseConfig } from '../../sidecar/config/load.js'
import { FastLane, laneHostProblem, laneUpstreamProblem } from '../../sidecar/core/fast-lane.js'
import { readSettings } from '../../sidecar/core/settings.js'
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

    it('counts open client-side connections from /proc/net/tcp, not the listener nor closed ones', async () => {
      const lane = new FastLane({ dir })
      assert.equal(lane.connections(`127.0.0.1:${port}`), 0)
      const c = connect(port, '127.0.0.1')
      await new Promise((r) => c.once('connect', r))
      assert.equal(lane.connections(`127.0.0.1:${port}`), 1)
      assert.equal(lane.connections(`127.0.0.2:${port}`), 0, 'another address')
      c.destroy()
      await new Promise((r) => c.once('close', r))
      for (const s of sockets) s.destroy()
      // the client side is gone at once (FIN_WAIT/TIME_WAIT are not counted)
      assert.equal(lane.connections(`127.0.0.1:${port}`), 0)
    })
  })
})
