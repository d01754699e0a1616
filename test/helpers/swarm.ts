/**
 * A real single-node Docker Swarm for integration tests, driven through the Engine API.
 * `swarmSkip()` needs dockerd (see docker.ts) in an active swarm on a manager node: .ci/run runs
 * `docker swarm init --advertise-addr 127.0.0.1` when the node is in none. Without it the tests
 * skip with a printed reason, except under CI where that is a failure.
 *
 * Everything a TestSwarm creates is named `relight-swarm-test-<run>-…`, carries
 * `relight.test.run=<run>`, and is removed by `cleanup()`. Images are referenced by their
 * `sha256:` id (with a tag, every task start would try a registry pull first). Ports are
 * published in host mode (no IPVS for the routing mesh here) and probed on 127.0.0.1 only.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { EngineClient } from '../../sidecar/providers/moby/client.js'
import type { Service, Task } from '../../sidecar/providers/swarm/services.js'
import { DOCKER_SOCKET, dockerSkip } from './docker.js'
import { freePort, tempDir } from './net.js'
import { busyboxRootfsTar } from './rootfs.js'

export const NAME_PREFIX = 'relight-swarm-test-'

/** undefined when dockerd answers and is a swarm manager; a skip reason otherwise (throws under CI). */
export async function swarmSkip(): Promise<string | undefined> {
  const docker = await dockerSkip()
  if (docker !== undefined) return docker
  const client = new EngineClient({ address: DOCKER_SOCKET })
  try {
    const info = await client.json<{ Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean } }>('GET', '/info', { signal: AbortSignal.timeout(10_000) })
    if (info.Swarm?.LocalNodeState !== 'active') return skip('the Docker engine is not in a swarm (docker swarm init --advertise-addr 127.0.0.1; .ci/run does it)')
    if (!info.Swarm.ControlAvailable) return skip('the Docker engine is a swarm worker, not a manager')
    return undefined
  } finally {
    await client.close()
  }
}

function skip(reason: string): string {
  if (process.env.CI) throw new Error(`${reason}; CI requires the Swarm tests (see .ci/run)`)
  process.stderr.write(`# ${reason}; skipping Swarm tests\n`)
  return reason
}

export interface ServiceOptions {
  readonly labels?: Record<string, string>
  readonly replicas?: number
  /** Host port to publish the app's port 8080 on (default: a free one); `null`: publish nothing. */
  readonly published?: number | null
  /** Default: busybox httpd on 8080. */
  readonly args?: string[]
  readonly mode?: 'replicated' | 'global'
  /** Labels of the task containers (not the service). */
  readonly containerLabels?: Record<string, string>
}

export interface TestService {
  readonly id: string
  readonly name: string
  /** The host port (127.0.0.1:port answers while a task runs). */
  readonly port: number
}

export class TestSwarm {
  readonly client = new EngineClient({ address: DOCKER_SOCKET, name: 'docker' })
  readonly run: string

  /** `tag`: a helper or test name that goes into every name and label prefix (e.g. `shared-swarm`; default RELIGHT_TEST_TAG, else `s`). */
  constructor(tag = process.env.RELIGHT_TEST_TAG ?? 's') {
    this.run = `${tag}${randomBytes(4).toString('hex')}`
    this.tag = `${NAME_PREFIX}img:${this.run}`
  }
  /** `sha256:…` of the imported busybox image. */
  image = ''
  private readonly tag: string

  /** `docker import` of the busybox rootfs; answers the image id. */
  async importImage(index = '<h1>relight swarm test</h1>\n'): Promise<string> {
    const tmp = tempDir('relight-img-')
    try {
      const tar = busyboxRootfsTar(tmp.dir, index)
      await this.client.request('POST', '/images/create', {
        query: { fromSrc: '-', repo: `${NAME_PREFIX}img`, tag: this.run, changes: ['LABEL relight.test=1', `LABEL relight.test.run=${this.run}`] },
        body: readFileSync(tar),
        headers: { 'content-type': 'application/x-tar' },
        signal: AbortSignal.timeout(60_000),
      })
      const inspect = await this.client.json<{ Id: string }>('GET', `/images/${encodeURIComponent(this.tag)}/json`, { signal: AbortSignal.timeout(10_000) })
      this.image = inspect.Id
      return this.image
    } finally {
      tmp.remove()
    }
  }

  /** A replicated service (0 replicas unless said) running busybox httpd on 8080, published in host mode. */
  async service(options: ServiceOptions = {}): Promise<TestService> {
    const name = `${NAME_PREFIX}${this.run}-${randomBytes(3).toString('hex')}`
    const port = options.published === null ? 0 : (options.published ?? (await freePort()))
    const { ID } = await this.client.json<{ ID: string }>('POST', '/services/create', {
      body: {
        Name: name,
        Labels: { 'relight.test': '1', 'relight.test.run': this.run, ...(options.labels ?? {}) },
        TaskTemplate: {
          ContainerSpec: {
            Image: this.image,
            Args: options.args ?? ['/bin/busybox', 'httpd', '-f', '-p', '8080', '-h', '/www'],
            Labels: { 'relight.test': '1', 'relight.test.run': this.run, ...(options.containerLabels ?? {}) },
            // docker-init forwards SIGTERM to busybox: a scaled-down task frees its port at once
            // (a new task of the service cannot be placed while the old one holds the host port).
            Init: true,
            StopGracePeriod: 1_000_000_000,
          },
          RestartPolicy: { Condition: 'any', Delay: 500_000_000 },
        },
        Mode: options.mode === 'global' ? { Global: {} } : { Replicated: { Replicas: options.replicas ?? 0 } },
        EndpointSpec: {
          Mode: 'dnsrr',
          Ports: options.published === null ? [] : [{ Protocol: 'tcp', TargetPort: 8080, PublishedPort: port, PublishMode: 'host' }],
        },
      },
      signal: AbortSignal.timeout(30_000),
    })
    return { id: ID, name, port }
  }

  inspect(id: string): Promise<Service> {
    return this.client.json<Service>('GET', `/services/${id}`, { signal: AbortSignal.timeout(10_000) })
  }

  async replicas(id: string): Promise<number> {
    return (await this.inspect(id)).Spec.Mode?.Replicated?.Replicas ?? -1
  }

  /** Running tasks of a service. */
  async running(id: string): Promise<Task[]> {
    const tasks = await this.client.json<Task[]>('GET', '/tasks', { query: { filters: { service: [id], 'desired-state': ['running'] } }, signal: AbortSignal.timeout(10_000) })
    return tasks.filter((t) => t.Status.State === 'running')
  }

  /** Scale through the API the way an operator would (read, write back with the version). */
  async scale(id: string, replicas: number): Promise<void> {
    const s = await this.inspect(id)
    const spec = { ...s.Spec, Mode: { Replicated: { Replicas: replicas } } }
    await this.client.request('POST', `/services/${id}/update`, { query: { version: s.Version.Index }, body: spec, signal: AbortSignal.timeout(30_000) })
  }

  async remove(id: string): Promise<void> {
    await this.client.request('DELETE', `/services/${id}`, { signal: AbortSignal.timeout(30_000) }).catch(() => undefined)
  }

  /** Remove every service and the image this TestSwarm created. */
  async cleanup(): Promise<void> {
    try {
      const services = await this.client.json<Service[]>('GET', '/services', {
        query: { filters: { label: [`relight.test.run=${this.run}`] } },
        signal: AbortSignal.timeout(30_000),
      })
      await Promise.all(services.map((s) => this.remove(s.ID)))
      if (this.image) {
        // The image stays in use until the removed services' task containers are gone.
        const deadline = Date.now() + 30_000
        for (;;) {
          const left = await this.client.json<unknown[]>('GET', '/containers/json', {
            query: { all: true, filters: { label: [`relight.test.run=${this.run}`] } },
            signal: AbortSignal.timeout(10_000),
          })
          if (left.length === 0 || Date.now() > deadline) break
          await new Promise((r) => setTimeout(r, 200))
        }
        await this.client.request('DELETE', `/images/${encodeURIComponent(this.image)}`, { query: { force: true }, signal: AbortSignal.timeout(30_000) }).catch(() => undefined)
      }
    } finally {
      await this.client.close()
    }
  }
}
