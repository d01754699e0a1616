/**
 * examples/compose as written, with Debian's docker-compose 1.29 against the real dockerd: the
 * sidecar image built from the top-level Dockerfile (on the local stand-in base), Caddy from
 * Debian's binary, two labelled apps (one a group with a database stand-in). Host networking and
 * loopback ports only; every port, the label prefix and the idle timeout come from the variables
 * the compose file documents, so runs do not collide. A request wakes an app, apps sleep when
 * idle, a random host gets no certificate (on-demand TLS asks the sidecar).
 */
import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connect, type PeerCertificate } from 'node:tls'
import { promisify } from 'node:util'
import { Agent, request } from 'undici'
import { dockerSkip, TestDocker } from '../helpers/docker.js'
import { caddyImage, ROOT, sidecarImage } from '../helpers/images.js'
import { freePort } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

const run = promisify(execFile)
const DIR = join(ROOT, 'examples/compose')

function composeSkip(): string | undefined {
  if (spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0) return undefined
  const reason = 'docker-compose is not installed (apt-get install docker-compose)'
  if (process.env.CI) throw new Error(`${reason}; CI requires the compose test (see .ci/run)`)
  process.stderr.write(`# ${reason}; skipping\n`)
  return reason
}

/** The certificate Caddy presents for `name`, or the handshake error. */
function handshake(port: number, name: string): Promise<{ cert?: PeerCertificate; error?: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, servername: name, rejectUnauthorized: false, timeout: 20_000 })
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate()
      socket.destroy()
      resolve({ cert })
    })
    socket.once('error', (err) => resolve({ error: err.message }))
    socket.once('timeout', () => {
      socket.destroy()
      resolve({ error: 'timeout' })
    })
  })
}

describe('examples/compose with docker-compose 1.29 and the built images', { skip: composeSkip() }, () => {
  const docker = new TestDocker()
  const project = `relight-compose-${randomBytes(3).toString('hex')}`
  const env: Record<string, string> = {}
  let https = 0
  const compose = (...args: string[]) =>
    run('docker-compose', ['-f', join(DIR, 'docker-compose.yml'), '-p', project, ...args], { cwd: DIR, env: { ...process.env, ...env }, timeout: 240_000, maxBuffer: 32 * 1024 * 1024 })
  const tls = new Agent({ connect: { rejectUnauthorized: false } })

  before(async () => {
    const skip = await dockerSkip()
    if (skip) throw new Error(skip)
    const [sidecar, caddy, app] = await Promise.all([sidecarImage(), caddyImage(), docker.importImage()])
    https = await freePort()
    Object.assign(env, {
      DOCKER_GID: String(statSync('/var/run/docker.sock').gid),
      RELIGHT_IMAGE: sidecar.tag,
      CADDY_IMAGE: caddy.tag,
      APP_IMAGE: app,
      RELIGHT_PORT: String(await freePort()),
      RELIGHT_LABEL_PREFIX: docker.run,
      RELIGHT_IDLE_TIMEOUT: '4s',
      RELIGHT_MIN_IDLE_TIMEOUT: '1s',
      CADDY_HTTP_PORT: String(await freePort()),
      CADDY_HTTPS_PORT: String(https),
      CADDY_ADMIN: `127.0.0.1:${await freePort()}`,
      CADDY_TLS_ISSUER: 'internal',
      WHOAMI_PORT: String(await freePort()),
      NOTES_PORT: String(await freePort()),
      NOTES_DB_PORT: String(await freePort()),
    })
    await compose('up', '-d')
  })
  after(async () => {
    if (env.DOCKER_GID) {
      const logs = await compose('logs', '--no-color', '--tail', '40', 'sidecar', 'caddy').catch((e: Error) => ({ stdout: e.message }))
      if (process.env.RELIGHT_TEST_VERBOSE) process.stderr.write(logs.stdout)
      await compose('down', '-v', '--remove-orphans', '-t', '1').catch(() => undefined)
    }
    await tls.close()
    await docker.cleanup()
  })

  const ids = new Map<string, string>()
  const container = async (service: string) => {
    if (!ids.has(service)) ids.set(service, (await compose('ps', '-q', service)).stdout.trim())
    return ids.get(service) as string
  }
  const inspect = async (service: string) => {
    const { stdout } = await run('docker', ['inspect', await container(service)])
    return (JSON.parse(stdout) as { State: { Status: string; StartedAt: string; Health?: { Status: string } } }[])[0] as { State: { Status: string; StartedAt: string; Health?: { Status: string } } }
  }
  const get = async (host: string) => {
    const res = await request(`https://127.0.0.1:${https}/`, { dispatcher: tls, headers: { host }, signal: AbortSignal.timeout(90_000) })
    return { status: res.statusCode, body: await res.body.text() }
  }
  /** Bounded wait on container states (the stack has no event a test could hook). */
  const states = (want: Record<string, string>, what: string) =>
    until(
      async () => {
        for (const [service, status] of Object.entries(want)) if ((await inspect(service)).State.Status !== status) return false
        return true
      },
      what,
      60_000,
      250,
    )

  it('the sidecar container is healthy by its own HEALTHCHECK, and runs as uid 1000 with the socket group', async () => {
    await until(async () => (await inspect('sidecar')).State.Health?.Status === 'healthy', 'the sidecar to be healthy', 60_000, 250)
    const { stdout } = await run('docker', ['exec', await container('sidecar'), 'id'])
    assert.match(stdout, new RegExp(`^uid=1000\\(node\\) gid=1000\\(node\\) groups=1000\\(node\\),${env.DOCKER_GID}\\b`))
  })

  it('apps `up -d` started sleep once idle (whoami paused; notes, then its db, stopped)', async () => {
    await states({ whoami: 'paused', notes: 'exited', 'notes-db': 'exited' }, 'the apps to sleep after 4 s idle')
  })

  it('a request wakes whoami; one for notes starts its database first', async () => {
    const whoami = await get('whoami.localhost')
    assert.equal(whoami.status, 200, whoami.body)
    assert.match(whoami.body, /^whoami: hello from /, 'whoami (paused before) answered')
    const notes = await get('notes.localhost')
    assert.equal(notes.status, 200, notes.body)
    assert.equal(notes.body, 'notes: db answered ok\n', 'notes found its database up when it started')
    const [db, app] = [await inspect('notes-db'), await inspect('notes')]
    assert.ok(Date.parse(db.State.StartedAt) < Date.parse(app.State.StartedAt), 'notes-db started before notes')
    await states({ whoami: 'paused', notes: 'exited', 'notes-db': 'exited' }, 'the apps to sleep again')
  })

  it("only the apps' names get a certificate: a random host does not (the ask endpoint)", async () => {
    const good = await handshake(https, 'whoami.localhost')
    assert.equal(good.error, undefined)
    assert.match(String(good.cert?.issuer?.CN), /Caddy Local Authority/)
    assert.deepEqual(good.cert?.subjectaltname, 'DNS:whoami.localhost')
    const random = `random-${randomBytes(4).toString('hex')}.example.com`
    const bad = await handshake(https, random)
    assert.equal(bad.cert, undefined, `${random} must not get a certificate`)
    assert.match(bad.error ?? '', /alert|handshake|socket hang up|ECONNRESET/i)
    // The internal issuer would sign any name: what refused this one is the sidecar's answer.
    const ask = async (domain: string) => (await request(`http://127.0.0.1:${env.RELIGHT_PORT}/_relight/ask?domain=${domain}`)).statusCode
    assert.equal(await ask(random), 404)
    assert.equal(await ask('notes.localhost'), 200)
  })
})
