/**
 * A stand-in kubelet for the test control plane (which has no kubelet and no scheduler): it
 * watches the pods of one namespace; for each new pod it starts a real HTTP process
 * (test/fixtures/pod-app.mjs) on its own loopback address (127.0.0.x, never anything else) and
 * the port the pod's first container declares, then PATCHes the pod's status to Running and
 * Ready with that podIP. When a pod is deleted (scale-down, workload deleted) it stops the process.
 * A pod whose first container's image is `CRASH_IMAGE` starts nothing: its status says the
 * container crash-loops (exit code 1, CrashLoopBackOff), as a real kubelet's would.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import { stopChild } from './caddy.js'
import type { ControlPlane } from './k8s.js'

const POD_APP = fileURLToPath(new URL('../../../test/fixtures/pod-app.mjs', import.meta.url))

/** The image of a container that exits with code 1 at once, again and again. */
export const CRASH_IMAGE = 'relight-test/crash'

interface PodObject {
  metadata: { name: string; namespace: string; resourceVersion: string; deletionTimestamp?: string }
  spec?: { containers?: { name?: string; image?: string; ports?: { containerPort?: number }[] }[] }
  status?: { podIP?: string; containerStatuses?: unknown[] }
}

export interface RunningPod {
  readonly name: string
  readonly ip: string
  readonly port: number
  readonly child: ChildProcess
}

/** Addresses handed out in this process: 127.0.0.2 … 127.0.0.254, never reused while in use. */
const inUse = new Set<string>()
let nextHost = 2 + Math.floor(Math.random() * 200)

function takeAddress(): string {
  for (let i = 0; i < 253; i++) {
    const host = nextHost
    nextHost = nextHost >= 254 ? 2 : nextHost + 1
    const ip = `127.0.0.${host}`
    if (!inUse.has(ip)) {
      inUse.add(ip)
      return ip
    }
  }
  throw new Error('no free 127.0.0.x address')
}

export class StandInKubelet extends EventEmitter {
  readonly pods = new Map<string, RunningPod>()
  /** Pods seen, started and stopped (for assertions). */
  readonly counts = { started: 0, stopped: 0, crashed: 0 }
  private readonly controller = new AbortController()
  private readonly starting = new Set<string>()
  private running: Promise<void> | undefined

  private constructor(
    private readonly cp: ControlPlane,
    readonly namespace: string,
  ) {
    super()
  }

  /** Start following the namespace's pods; resolves once the watch is open. */
  static async start(cp: ControlPlane, namespace: string): Promise<StandInKubelet> {
    const k = new StandInKubelet(cp, namespace)
    await new Promise<void>((resolve, reject) => {
      k.running = k.follow(resolve).catch((err: unknown) => {
        if (!k.controller.signal.aborted) {
          reject(err)
          k.emit('error', err)
        }
      })
    })
    return k
  }

  /** Resolves when a pod named `name` runs (already or later). */
  waitRunning(name: string): Promise<RunningPod> {
    const pod = this.pods.get(name)
    if (pod) return Promise.resolve(pod)
    return new Promise((resolve) => {
      const on = (p: RunningPod) => {
        if (p.name !== name) return
        this.off('ready', on)
        resolve(p)
      }
      this.on('ready', on)
    })
  }

  /** Resolves when no pod whose name starts with `prefix` runs. */
  waitGone(prefix: string): Promise<void> {
    const any = () => [...this.pods.keys()].some((n) => n.startsWith(prefix))
    if (!any()) return Promise.resolve()
    return new Promise((resolve) => {
      const on = () => {
        if (any()) return
        this.off('stopped', on)
        resolve()
      }
      this.on('stopped', on)
    })
  }

  private async follow(opened: () => void): Promise<void> {
    const base = `/api/v1/namespaces/${this.namespace}/pods`
    const list = await this.cp.ok<{ metadata: { resourceVersion: string }; items: PodObject[] }>('GET', base)
    let rv = list.metadata.resourceVersion
    for (const pod of list.items) this.onPod('ADDED', pod)
    let first = true
    while (!this.controller.signal.aborted) {
      const res = await this.cp.stream(`${base}?watch=1&resourceVersion=${rv}`, this.controller.signal)
      if (first) {
        first = false
        opened()
      }
      let buffer = ''
      try {
        for await (const chunk of res) {
          buffer += (chunk as Buffer).toString('utf8')
          let nl: number
          while ((nl = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, nl)
            buffer = buffer.slice(nl + 1)
            if (!line.trim()) continue
            const event = JSON.parse(line) as { type: string; object: PodObject }
            if (event.type === 'ERROR') throw new Error(`kubelet watch error: ${line}`)
            rv = event.object.metadata.resourceVersion
            this.onPod(event.type, event.object)
          }
        }
      } catch (err) {
        if (this.controller.signal.aborted) return
        throw err
      }
    }
  }

  private onPod(type: string, pod: PodObject): void {
    const name = pod.metadata.name
    if (type === 'DELETED' || pod.metadata.deletionTimestamp) {
      void this.stopPod(name)
      return
    }
    if (this.pods.has(name) || this.starting.has(name) || pod.status?.podIP) return
    if (pod.spec?.containers?.[0]?.image === CRASH_IMAGE) {
      if (pod.status?.containerStatuses === undefined) this.crashLoop(name, pod.spec.containers[0].name ?? 'app').catch((err: unknown) => this.emit('error', err))
      return
    }
    const port = pod.spec?.containers?.[0]?.ports?.[0]?.containerPort
    if (!port) return
    this.starting.add(name)
    this.startPod(name, port)
      .catch((err: unknown) => this.emit('error', err))
      .finally(() => this.starting.delete(name))
  }

  private async startPod(name: string, port: number): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const ip = takeAddress()
      const child = spawn(process.execPath, [POD_APP], { env: { ...process.env, HOST: ip, PORT: String(port), NAME: name }, stdio: ['ignore', 'pipe', 'pipe'] })
      const outcome = await new Promise<'listening' | 'taken' | 'failed'>((resolve) => {
        child.stdout?.once('data', () => resolve('listening'))
        child.once('exit', (code) => resolve(code === 98 ? 'taken' : 'failed'))
      })
      if (outcome !== 'listening') {
        inUse.delete(ip)
        if (outcome === 'taken') continue
        throw new Error(`pod app for ${name} failed to start`)
      }
      const pod: RunningPod = { name, ip, port, child }
      this.pods.set(name, pod)
      this.counts.started++
      const res = await this.cp.api('PATCH', `/api/v1/namespaces/${this.namespace}/pods/${name}/status`, {
        status: {
          phase: 'Running',
          podIP: ip,
          podIPs: [{ ip }],
          conditions: [
            { type: 'Ready', status: 'True' },
            { type: 'ContainersReady', status: 'True' },
          ],
        },
      }, 'application/merge-patch+json')
      if (res.status === 404) {
        await this.stopPod(name) // deleted before it came up
        return
      }
      if (res.status !== 200) throw new Error(`pod ${name} status: ${res.status}`)
      this.emit('ready', pod)
      return
    }
    throw new Error(`no free 127.0.0.x address for ${name} on port ${port}`)
  }

  private async crashLoop(name: string, container: string): Promise<void> {
    const res = await this.cp.api('PATCH', `/api/v1/namespaces/${this.namespace}/pods/${name}/status`, {
      status: {
        phase: 'Running',
        conditions: [{ type: 'Ready', status: 'False' }],
        containerStatuses: [
          {
            name: container,
            image: CRASH_IMAGE,
            imageID: '',
            ready: false,
            restartCount: 1,
            state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 10s restarting failed container' } },
            lastState: { terminated: { exitCode: 1, reason: 'Error' } },
          },
        ],
      },
    }, 'application/merge-patch+json')
    if (res.status !== 200 && res.status !== 404) throw new Error(`pod ${name} status: ${res.status}`)
    this.counts.crashed++
  }

  private async stopPod(name: string): Promise<void> {
    const pod = this.pods.get(name)
    if (!pod) return
    this.pods.delete(name)
    await stopChild(pod.child)
    inUse.delete(pod.ip)
    this.counts.stopped++
    this.emit('stopped', pod)
  }

  async close(): Promise<void> {
    this.controller.abort()
    await this.running
    await Promise.all([...this.pods.keys()].map((n) => this.stopPod(n)))
  }
}
