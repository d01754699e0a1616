/**
 * Real Podman for integration tests: a private `podman system service` on a temp socket
 * (spawned here, stopped by pid), a busybox image imported from test/helpers/rootfs.ts, and
 * busybox httpd containers on the host network listening on a loopback port. Everything a test
 * creates carries a per-run label and is removed by `cleanup()`. Storage stays Podman's default.
 *
 * Tests call `podmanSkip()`: without podman/runc they skip with a printed reason, except under
 * CI, where that is a failure.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, watch } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { isRelightError } from '../../sidecar/core/errors.js'
import { EngineClient } from '../../sidecar/providers/moby/client.js'
import { LIBPOD_PREFIX } from '../../sidecar/providers/podman/libpod.js'
import { stopChild } from './caddy.js'
import { freePort, tempDir } from './net.js'
import { busyboxRootfsTar } from './rootfs.js'

let available: boolean | undefined
export function podmanInstalled(): boolean {
  available ??= spawnSync('podman', ['--version'], { stdio: 'ignore' }).status === 0 && spawnSync('runc', ['--version'], { stdio: 'ignore' }).status === 0
  return available
}

/** undefined when Podman can run; a skip reason otherwise (throws under CI). */
export function podmanSkip(): string | undefined {
  if (podmanInstalled()) return undefined
  if (process.env.CI) throw new Error('podman or runc is not installed, and CI requires the Podman tests (see .ci/run)')
  const reason = 'podman/runc is not installed (apt-get install podman runc); skipping Podman tests'
  process.stderr.write(`# ${reason}\n`)
  return reason
}

export interface TestContainer {
  readonly id: string
  readonly name: string
  readonly port: number
}

export interface PodmanFixture {
  /** The service's socket path (the provider's `socket`). */
  readonly socket: string
  /** Label prefix unique to this run, so parallel test files never see each other's containers. */
  readonly prefix: string
  /** libpod client for the test's own set-up calls. */
  readonly libpod: EngineClient
  readonly image: string
  /** Create (and by default start) a busybox httpd container on the host network. */
  container(options: { hosts: string; labels?: Record<string, string>; start?: boolean; port?: number; command?: (port: number) => string[] }): Promise<TestContainer>
  /** Remove every container this run created, the image, stop the service. */
  cleanup(): Promise<void>
}

function waitForFile(dir: string, name: string, child: ChildProcess, output: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const file = join(dir, name)
    const watcher = watch(dir)
    const timer = setTimeout(() => finish(new Error(`podman system service did not create ${file} within 20 s:\n${output()}`)), 20_000)
    const onExit = (code: number | null) => finish(new Error(`podman system service exited with code ${code}:\n${output()}`))
    function finish(err?: Error) {
      clearTimeout(timer)
      watcher.close()
      child.off('exit', onExit)
      if (err) reject(err)
      else resolve()
    }
    watcher.on('change', () => {
      if (existsSync(file)) finish()
    })
    child.once('exit', onExit)
    if (existsSync(file)) finish()
  })
}

/** The socket exists a moment before the service accepts on it: retry the ping briefly. */
async function untilAccepting(libpod: EngineClient, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 20_000
  let wait = 10
  for (;;) {
    try {
      await libpod.request('GET', '/_ping', { signal: AbortSignal.timeout(5000) })
      return
    } catch (err) {
      if (!isRelightError(err, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE') || Date.now() > deadline || child.exitCode !== null) {
        throw new Error(`podman system service does not answer: ${(err as Error).message}\n${output()}`)
      }
    }
    await new Promise((r) => setTimeout(r, wait))
    wait = Math.min(wait * 2, 200)
  }
}

export async function startPodman(): Promise<PodmanFixture> {
  const tmp = tempDir('relight-pm-')
  const socket = join(tmp.dir, 'podman.sock')
  const child = spawn('podman', ['system', 'service', '--time', '0', `unix://${socket}`], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()))
  const run = randomBytes(4).toString('hex')
  const prefix = `relight-t${run}`
  const libpod = new EngineClient({ address: socket, apiPrefix: LIBPOD_PREFIX, name: 'podman' })
  const image = `localhost/relight-test-${run}:latest`
  const stop = async () => {
    await libpod.close()
    await stopChild(child)
    tmp.remove()
  }
  try {
    await waitForFile(tmp.dir, 'podman.sock', child, () => output)
    await untilAccepting(libpod, child, () => output)
    const tar = busyboxRootfsTar(tmp.dir)
    await libpod.request('POST', '/images/import', {
      query: { reference: image },
      body: readFileSync(tar),
      headers: { 'content-type': 'application/x-tar' },
      signal: AbortSignal.timeout(60_000),
    })
  } catch (err) {
    await stop()
    throw err
  }

  const created: string[] = []
  return {
    socket,
    prefix,
    libpod,
    image,
    async container({ hosts, labels = {}, start = true, port, command }) {
      const p = port ?? (await freePort())
      const name = `relight-test-${run}-${created.length}`
      const res = await libpod.json<{ Id: string }>('POST', '/containers/create', {
        body: {
          image,
          name,
          command: command?.(p) ?? ['/bin/busybox', 'httpd', '-f', '-p', `127.0.0.1:${p}`, '-h', '/www'],
          netns: { nsmode: 'host' },
          // httpd as PID 1 ignores SIGTERM: stop with SIGKILL rather than wait for the timeout.
          stop_signal: 9,
          labels: { [`${prefix}.domain`]: hosts, [`${prefix}.port`]: String(p), 'relight-test.run': run, ...labels },
        },
        signal: AbortSignal.timeout(30_000),
      })
      created.push(res.Id)
      if (start) await libpod.request('POST', `/containers/${res.Id}/start`, { signal: AbortSignal.timeout(30_000) })
      return { id: res.Id, name, port: p }
    },
    async cleanup() {
      const signal = AbortSignal.timeout(60_000)
      const mine = await libpod
        .json<{ Id: string }[]>('GET', '/containers/json', { query: { all: true, filters: { label: [`relight-test.run=${run}`] } }, signal })
        .catch(() => [])
      for (const id of new Set([...created, ...(mine ?? []).map((c) => c.Id)])) {
        await libpod.request('DELETE', `/containers/${id}`, { query: { force: true, v: true }, signal }).catch(() => undefined)
      }
      await libpod.request('DELETE', `/images/${encodeURIComponent(image)}`, { query: { force: true }, signal }).catch(() => undefined)
      await stop()
    },
  }
}
