/** Start-up checks shared by `check` and `serve`: groups, socket paths, listen errors. */
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { socketPathProblem } from '../../sidecar/core/unix-socket.js'
import { lookupGroup, socketGroupProblem } from '../../sidecar/startup/groups.js'
import { describeListenError, tcpListenProblem } from '../../sidecar/startup/listen-address.js'
import { tcpPortHolder } from '../../sidecar/startup/port-holder.js'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseConfig } from '../../sidecar/config/load.js'
import { preflight } from '../../sidecar/providers/index.js'
import { socketReachProblems } from '../../sidecar/startup/socket-reach.js'
import { freePort, tempDir } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

describe('start-up checks', () => {
  const tmp = tempDir('relight-startup-unit-')
  after(() => tmp.remove())

  it('finds groups by name or gid, and names an unknown one', () => {
    assert.deepEqual(lookupGroup('root'), { name: 'root', gid: 0 })
    assert.deepEqual(lookupGroup('0'), { name: 'root', gid: 0 })
    assert.equal(lookupGroup('relight-no-such-group'), undefined)
    assert.equal(socketGroupProblem('relight-no-such-group'), 'socket_group: there is no group "relight-no-such-group" on this machine')
  })

  it('says why a socket path cannot be used, and accepts a directory it can create', () => {
    writeFileSync(join(tmp.dir, 'file'), '')
    assert.match(socketPathProblem(join(tmp.dir, 'file/sub/a.sock'), 'listen') ?? '', /^listen: cannot create the directory .*\/file\/sub for .*: .*\/file is not a directory$/)
    assert.match(socketPathProblem(`/tmp/${'x'.repeat(110)}.sock`, 'access_log') ?? '', /^access_log: the unix socket path \S+ is too long \(120 bytes; Linux allows 107\)$/)
    assert.equal(socketPathProblem(join(tmp.dir, 'new/dir/a.sock'), 'listen'), undefined)
  })

  it("fast_lane_dir: a directory above it that socket_group cannot search is a problem (Caddy's file matcher would never see a flag)", () => {
    const closed = join(tmp.dir, 'closed')
    mkdirSync(join(closed, 'inner'), { recursive: true })
    chmodSync(tmp.dir, 0o755)
    const config = parseConfig(`listen: 127.0.0.1:0\nsocket_group: root\nfast_lane_dir: ${closed}/inner/awake\n`, 'test')
    try {
      chmodSync(closed, 0o700)
      const problems = socketReachProblems(config)
      assert.equal(problems.length, 1, problems.join('\n'))
      assert.match(problems[0] ?? '', new RegExp(`^fast_lane_dir: members of group root \\(Caddy\\) cannot reach ${closed}/inner/awake: ${closed} is mode 0700 .*no request takes the fast lane.*chmod o\\+x ${closed}`))
      chmodSync(closed, 0o711)
      assert.deepEqual(socketReachProblems(config), [])
    } finally {
      chmodSync(closed, 0o755)
    }
  })

  // Review of issue 25: serve refused a fast_lane_dir others may write, while check said "all checks passed".
  it('fast_lane_dir writable by its group or every user is a problem for check as for serve, named with the fix', async () => {
    const dir = join(tmp.dir, 'lane-open')
    mkdirSync(dir)
    chmodSync(tmp.dir, 0o755)
    const config = parseConfig(`listen: 127.0.0.1:0\nfast_lane_dir: ${dir}\n`, 'test')
    chmodSync(dir, 0o775)
    assert.match((await preflight(config)).join('\n'), new RegExp(`^fast_lane_dir ${dir} refused: ${dir} is writable by its group \\(mode 775\\): .*chmod 755`))
    chmodSync(dir, 0o777)
    assert.match((await preflight(config)).join('\n'), /writable by every user \(mode 777\)/)
    chmodSync(dir, 0o755)
    assert.deepEqual(await preflight(config), [])
    // a directory above it others could replace is the same problem serve meets first
    const above = join(tmp.dir, 'lane-above')
    mkdirSync(above)
    chmodSync(above, 0o777)
    try {
      assert.match((await preflight(parseConfig(`listen: 127.0.0.1:0\nfast_lane_dir: ${above}/awake\n`, 'test'))).join('\n'), /^fast_lane_dir .* refused: .*lane-above \(above .*\) is writable by every user without the sticky bit/)
    } finally {
      chmodSync(above, 0o755)
    }
  })

  it('names the program holding a TCP port', async () => {
    const server = createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as { port: number }).port
    try {
      assert.equal(tcpPortHolder(port)?.pid, process.pid)
      const problem = await tcpListenProblem('listen', `127.0.0.1:${port}`)
      assert.match(problem ?? '', new RegExp(`^listen: 127\\.0\\.0\\.1:${port} is in use by another program \\(pid ${process.pid}, `))
    } finally {
      server.close()
    }
    assert.equal(await tcpListenProblem('listen', '127.0.0.1:0'), undefined)
    const eacces = Object.assign(new Error('listen EACCES'), { code: 'EACCES' })
    assert.equal(describeListenError('listen', '0.0.0.0:80', eacces), 'listen: no permission to listen on 0.0.0.0:80 (ports below 1024 need root or CAP_NET_BIND_SERVICE)')
    const notHere = Object.assign(new Error('x'), { code: 'EADDRNOTAVAIL' })
    assert.equal(describeListenError('access_log', '192.0.2.1:9000', notHere), 'access_log: 192.0.2.1 is not an address of this machine')
  })

  it("an app's port held by a group a crashed sidecar left is not a problem: recovery ends it first", async (t) => {
    const port = await freePort()
    const app = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
    const leftover = spawn(process.execPath, [app], { env: { ...process.env, PORT: String(port) }, detached: true, stdio: 'ignore' })
    t.after(() => leftover.kill('SIGKILL'))
    await until(() => tcpPortHolder(port)?.pid === leftover.pid, 'the leftover to listen')
    const config = parseConfig(`listen: 127.0.0.1:0\nproviders:\n  process:\n    apps:\n      - { name: web, hosts: [web.localhost], command: [node, x.js], port: ${port} }\n`, 'test.yaml')
    assert.match((await preflight(config)).join('\n'), new RegExp(`^process: web: 127\\.0\\.0\\.1:${port} is in use by another program \\(pid ${leftover.pid}, `))
    assert.deepEqual(await preflight(config, { leftoverGroups: new Set([leftover.pid as number]) }), [])
  })
})
