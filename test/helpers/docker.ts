/**
 * A real Docker engine for integration tests, driven through the Engine API (no docker CLI).
 * `dockerSkip()` makes sure dockerd answers on /var/run/docker.sock, starting it in the
 * background when the socket is silent (CI also starts it in .ci/run). Without dockerd the tests
 * skip with a printed reason, except under CI where that is a failure.
 *
 * Everything a TestDocker creates carries `relight.test.run=<unique id>` and is removed by
 * `cleanup()`. Containers use host networking and listen on loopback ports only.
 */
import { spawn, spawnSync } from 'node:child_process'
import { openSync, readFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { EngineClient } from '../../sidecar/providers/moby/client.js'
import { busyboxRootfsTar } from './rootfs.js'
import { tempDir } from './net.js'

export const DOCKER_SOCKET = process.env.RELIGHT_TEST_DOCKER_SOCKET ?? '/var/run/docker.sock'
const DOCKERD_LOG = '/tmp/relight-test-dockerd.log'

async function answers(client: EngineClient): Promise<boolean> {
  try {
    await client.request('GET', '/_ping', { signal: AbortSignal.timeout(2000) })
    return true
  } catch {
    return false
  }
}

let ready: Promise<string | undefined> | undefined

/** undefined when dockerd answers (started here if needed); a skip reason otherwise (throws under CI). */
export function dockerSkip(): Promise<string | undefined> {
  ready ??= ensureDockerd()
  return ready
}

async function ensureDockerd(): Promise<string | undefined> {
  const client = new EngineClient({ address: DOCKER_SOCKET })
  try {
    if (await answers(client)) return undefined
    if (spawnSync('dockerd', ['--version'], { stdio: 'ignore' }).status !== 0) return skip('dockerd is not installed (apt-get install docker.io)')
    const log = openSync(DOCKERD_LOG, 'a')
    const child = spawn('dockerd', [], { detached: true, stdio: ['ignore', log, log] })
    child.unref()
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline) {
      if (await answers(client)) return undefined
      if (child.exitCode !== null) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    let tail = ''
    try {
      tail = readFileSync(DOCKERD_LOG, 'utf8').split('\n').slice(-20).join('\n')
    } catch {
      // no log
    }
    return skip(`dockerd did not answer on ${DOCKER_SOCKET} within 60 s:\n${tail}`)
  } finally {
    await client.close()
  }
}

function skip(reason: string): string {
  if (process.env.CI) throw new Error(`${reason}; CI requires the Docker tests (see .ci/run)`)
  process.stderr.write(`# ${reason}; skipping Docker tests\n`)
  return reason
}

export interface RunOptions {
  readonly name?: string
  readonly cmd: string[]
  readonly labels?: Record<string, string>
  /** Docker health check (`Test` as in the API, e.g. ['CMD', 'sh', '-c', '…']), checked every 200 ms. */
  readonly healthcheck?: string[]
  /** Create only, do not start. */
  readonly created?: boolean
  /** Run docker-init as PID 1 (default true: SIGTERM then stops busybox quickly). */
  readonly init?: boolean
}

export class TestDocker {
  readonly client = new EngineClient({ address: DOCKER_SOCKET, name: 'docker' })
  /** Unique per TestDocker: label prefix for the provider under test, and the cleanup label. */
  readonly run = `t${randomBytes(4).toString('hex')}`
  readonly image = `relight-test-busybox:${this.run}`
  private imported = false

  /** `docker import` of the busybox rootfs, through `POST /images/create?fromSrc=-`. */
  async importImage(index = '<h1>relight docker test</h1>\n'): Promise<string> {
    const tmp = tempDir('relight-img-')
    try {
      const tar = busyboxRootfsTar(tmp.dir, index)
      await this.client.request('POST', '/images/create', {
        query: { fromSrc: '-', repo: 'relight-test-busybox', tag: this.run, changes: ['LABEL relight.test=1', `LABEL relight.test.run=${this.run}`] },
        body: readFileSync(tar),
        headers: { 'content-type': 'application/x-tar' },
        signal: AbortSignal.timeout(60_000),
      })
      this.imported = true
      return this.image
    } finally {
      tmp.remove()
    }
  }

  /** Create (and start, unless `created`) a host-network container from the test image. */
  async container(options: RunOptions): Promise<string> {
    const name = options.name ?? `relight-${this.run}-${randomBytes(3).toString('hex')}`
    const { Id } = await this.client.json<{ Id: string }>('POST', '/containers/create', {
      query: { name },
      body: {
        Image: this.image,
        Cmd: options.cmd,
        Labels: { 'relight.test': '1', 'relight.test.run': this.run, ...(options.labels ?? {}) },
        ...(options.healthcheck ? { Healthcheck: { Test: options.healthcheck, Interval: 200_000_000, Timeout: 1_000_000_000, Retries: 1, StartPeriod: 0 } } : {}),
        HostConfig: { NetworkMode: 'host', Init: options.init ?? true },
      },
      signal: AbortSignal.timeout(30_000),
    })
    if (!options.created) await this.client.request('POST', `/containers/${Id}/start`, { signal: AbortSignal.timeout(30_000) })
    return Id
  }

  /** The busybox web server on a loopback port. */
  httpd(port: number): string[] {
    return ['busybox', 'httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', '/www']
  }

  /** The web server, and a shell loop keeping a core busy: its CPU figure must read above 0. */
  busyHttpd(port: number): string[] {
    return ['busybox', 'sh', '-c', `busybox httpd -p 127.0.0.1:${port} -h /www; while :; do :; done`]
  }

  async state(id: string): Promise<string> {
    const c = await this.client.json<{ State: { Status: string } }>('GET', `/containers/${id}/json`, { signal: AbortSignal.timeout(10_000) })
    return c.State.Status
  }

  async post(id: string, action: 'start' | 'stop' | 'pause' | 'unpause'): Promise<void> {
    await this.client.request('POST', `/containers/${id}/${action}`, { query: action === 'stop' ? { t: 1 } : {}, signal: AbortSignal.timeout(30_000) })
  }

  async remove(id: string): Promise<void> {
    await this.client.request('DELETE', `/containers/${id}`, { query: { force: true }, signal: AbortSignal.timeout(30_000) })
  }

  /** Remove every container and the image this TestDocker created. */
  async cleanup(): Promise<void> {
    try {
      const list = await this.client.json<{ Id: string }[]>('GET', '/containers/json', {
        query: { all: true, filters: { label: [`relight.test.run=${this.run}`] } },
        signal: AbortSignal.timeout(30_000),
      })
      await Promise.all(list.map((c) => this.remove(c.Id).catch(() => undefined)))
      if (this.imported) await this.client.request('DELETE', `/images/${encodeURIComponent(this.image)}`, { query: { force: true }, signal: AbortSignal.timeout(30_000) }).catch(() => undefined)
    } finally {
      await this.client.close()
    }
  }
}
