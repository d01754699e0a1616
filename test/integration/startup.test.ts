/**
 * `check` = `serve`: every config that serve refuses at start-up, check refuses first with the
 * same one-line reason; serve prints it without a stack trace and exits non-zero.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { freePort, tempDir } from '../helpers/net.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const MAIN = join(ROOT, 'dist/sidecar/main.js')
const APP = join(ROOT, 'test/fixtures/http-app.mjs')

function cli(args: string[], user?: string) {
  const command = user ? ['setpriv', `--reuid=${user}`, '--regid=nogroup', '--clear-groups', '--', process.execPath] : [process.execPath]
  const r = spawnSync(command[0] as string, [...command.slice(1), MAIN, ...args], { encoding: 'utf8', timeout: 30_000 })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

function listen(server: Server, options: { port?: number; path?: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.path !== undefined ? { path: options.path } : { host: '127.0.0.1', port: options.port ?? 0 }, resolve)
  })
}

interface Case {
  readonly name: string
  /** Config lines (listen defaults to a free port). */
  readonly yaml: () => string
  /** The reason both print (a function: ports are known only once the blockers listen). */
  readonly reason: RegExp | (() => RegExp)
  /** Run check and serve as this user (unprivileged cases). */
  readonly user?: string
  readonly skip?: () => string | undefined
}

describe('check refuses what serve refuses, with the same reason', () => {
  const tmp = tempDir('relight-startup-')
  const blockers: Server[] = []
  let takenPort = 0
  let takenSocket = ''
  const app = (port: number) => `providers:\n  process:\n    apps:\n      - { name: web, hosts: [web.localhost], command: [${process.execPath}, ${APP}], port: ${port} }\n`
  let free = 0

  before(async () => {
    chmodSync(tmp.dir, 0o755)
    const tcp = createServer()
    await listen(tcp, {})
    takenPort = (tcp.address() as { port: number }).port
    takenSocket = join(tmp.dir, 'taken.sock')
    const unix = createServer()
    await listen(unix, { path: takenSocket })
    blockers.push(tcp, unix)
    free = await freePort()
    writeFileSync(join(tmp.dir, 'a-file'), '')
    mkdirSync(join(tmp.dir, 'root-only'), { mode: 0o755 })
  })
  after(() => {
    for (const b of blockers) b.close()
    tmp.remove()
  })

  const holder = `\\(pid ${process.pid}, [^)]+\\)`
  const cases: Case[] = [
    { name: 'listen address in use', yaml: () => `listen: 127.0.0.1:${takenPort}\n`, reason: () => new RegExp(`^listen: 127\\.0\\.0\\.1:${takenPort} is in use by another program ${holder}$`) },
    { name: 'access_log address in use', yaml: () => `listen: 127.0.0.1:${free}\naccess_log: 127.0.0.1:${takenPort}\n`, reason: () => new RegExp(`^access_log: 127\\.0\\.0\\.1:${takenPort} is in use by another program ${holder}$`) },
    { name: 'listen socket answered by a running program', yaml: () => `listen: unix:${takenSocket}\n`, reason: /^listen: \S+taken\.sock is in use by a running program/ },
    { name: 'access_log and listen on one address', yaml: () => `listen: 127.0.0.1:${free}\naccess_log: 127.0.0.1:${free}\n`, reason: /^access_log: same address as listen/ },
    { name: 'socket directory cannot be created (a file is in the way)', yaml: () => `listen: unix:${tmp.dir}/a-file/run/sidecar.sock\n`, reason: /^listen: cannot create the directory \S+\/a-file\/run for \S+: \S+\/a-file is not a directory$/ },
    { name: 'socket path too long', yaml: () => `listen: unix:${tmp.dir}/${'x'.repeat(120)}.sock\n`, reason: /^listen: the unix socket path \S+ is too long \(\d+ bytes; Linux allows 107\)$/ },
    { name: 'unknown socket group', yaml: () => `listen: unix:${tmp.dir}/s1/sidecar.sock\nsocket_group: relight-no-such-group\n`, reason: /^socket_group: there is no group "relight-no-such-group" on this machine$/ },
    { name: "an app's port in use by another program", yaml: () => `listen: 127.0.0.1:${free}\n${app(takenPort)}`, reason: () => new RegExp(`^process: web: 127\\.0\\.0\\.1:${takenPort} is in use by another program ${holder}; the app could not listen there$`) },
    {
      name: 'socket directory not writable (unprivileged sidecar)',
      user: 'nobody',
      yaml: () => `listen: 127.0.0.1:${free}\naccess_log: unix:${tmp.dir}/root-only/access.sock\n`,
      reason: /^access_log: the directory \S+\/root-only is not writable by uid 65534, so \S+ cannot be created$/,
      skip: nobodySkip,
    },
    {
      name: 'socket directory missing, parent not writable (unprivileged sidecar)',
      user: 'nobody',
      yaml: () => `listen: unix:${tmp.dir}/root-only/relight/sidecar.sock\n`,
      reason: /^listen: the directory \S+\/root-only\/relight does not exist and cannot be created \(\S+\/root-only is not writable by uid 65534\)$/,
      skip: nobodySkip,
    },
    {
      name: 'socket_group the unprivileged sidecar is not in',
      user: 'nobody',
      yaml: () => `listen: 127.0.0.1:${free}\nsocket_group: root\n`,
      reason: /^socket_group: the sidecar runs as uid 65534, which is neither root nor a member of group "root"/,
      skip: nobodySkip,
    },
  ]

  for (const c of cases) {
    it(c.name, (t) => {
      const skip = c.skip?.()
      if (skip) return t.skip(skip)
      const file = join(tmp.dir, `${c.name.replace(/\W+/g, '-')}.yaml`)
      writeFileSync(file, c.yaml(), { mode: 0o644 })
      const check = cli(['check', '--config', file], c.user)
      assert.equal(check.code, 1, check.out + check.err)
      const lines = check.out.split('\n').filter(Boolean)
      assert.equal(new Set(lines).size, lines.length, `no repeated line:\n${check.out}`)
      const problems = lines.filter((l) => l.startsWith('PROBLEM')).map((l) => l.replace(/^PROBLEM\s+/, ''))
      const served = cli(['serve', '--config', file, '--log-format', 'json'], c.user)
      assert.notEqual(served.code, 0, `serve refused:\n${served.out}${served.err}`)
      assert.notEqual(served.code, null, 'serve exited by itself')
      assert.doesNotMatch(served.out + served.err, /\n\s+at /, 'no stack trace')
      const reasons = served.err.split('\n').filter(Boolean).map((l) => l.replace(/^relight-sidecar: cannot start: /, ''))
      assert.ok(reasons.length > 0 && served.err.startsWith('relight-sidecar: cannot start: '), served.err)
      const expected = typeof c.reason === 'function' ? c.reason() : c.reason
      assert.ok(reasons.some((r) => expected.test(r)), `serve's reason matches ${expected}:\n${served.err}`)
      for (const reason of reasons) assert.ok(problems.includes(reason), `check printed serve's reason "${reason}":\n${check.out}`)
    })
  }

  function nobodySkip(): string | undefined {
    let reason: string | undefined
    if (process.getuid?.() !== 0) reason = 'not root: cannot run as nobody'
    else if (spawnSync('setpriv', ['--version']).status !== 0) reason = 'setpriv (util-linux) is missing'
    else if (spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', 'test', '-r', MAIN]).status !== 0) reason = `nobody cannot read ${MAIN}`
    if (reason && process.env.CI) throw new Error(`${reason}; CI requires this case`)
    return reason
  }
})
