/**
 * A simulator of the SlicerVM REST API whose "VMs" are real HTTP server processes on loopback
 * addresses, so routed traffic is real:
 *   pause → SIGSTOP, resume → SIGCONT, suspend/shutdown → the process ends (a suspended VM keeps
 *   a "snapshot" flag), restore/relaunch → the process starts again.
 * Each VM gets its own loopback IP (127.A.B.n, all routed to `lo` on Linux) and listens on
 * `appPort`, or on the port of its `relight.port=N` tag, like an app in a real microVM.
 *
 * Endpoints: GET /healthz; GET /nodes[?tag=]; GET|POST /hostgroup/{g}/nodes;
 * DELETE /hostgroup/{g}/nodes/{h}; POST /vm/{h}/pause|resume|suspend|restore|shutdown|relaunch;
 * HEAD|GET /vm/{h}/health. Bearer auth on all but /healthz; errors are JSON {"error","code"}.
 * GET /hostgroup/{g}/nodes leaves out `status`, as the real API does.
 *
 * Library: `await SlicerSimulator.start({ token })`; command: dist/test/fakes/slicer/main.js.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { unlinkSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { fileURLToPath } from 'node:url'
import { waitReady } from '../../../sidecar/core/readiness.js'

export const VM_APP = fileURLToPath(new URL('../../../../test/fixtures/http-app.mjs', import.meta.url))

export type VmStatus = 'Running' | 'Paused' | 'Stopped'

export interface SimulatedVm {
  readonly hostname: string
  readonly hostgroup: string
  readonly ip: string
  readonly port: number
  readonly tags: readonly string[]
  readonly persistent: boolean
  readonly created_at: string
  status: VmStatus
  /** A suspend left a snapshot to restore from. */
  snapshot: boolean
  child: ChildProcess | undefined
  /** Serialises operations on this VM. */
  chain: Promise<unknown>
}

export interface SimulatorOptions {
  /** `127.0.0.1:PORT` (PORT 0 picks one), `unix:/path` or `/path`. Default 127.0.0.1:0. */
  readonly listen?: string
  /** Bearer token the API requires; none: no auth. */
  readonly token?: string
  /** Host groups that exist (default ["apps"]). */
  readonly hostGroups?: readonly string[]
  /** Port the app listens on in every VM without a relight.port tag (default 8080). */
  readonly appPort?: number
  /** First three octets of VM addresses (default a random 127.x.y, so simulators never collide). */
  readonly ipPrefix?: string
  /** The program each VM runs; it gets PORT, HOST and NAME in its environment. */
  readonly app?: { readonly command: string; readonly args: readonly string[] }
  /** How long a VM's app may take to listen. */
  readonly bootTimeoutMs?: number
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

export interface SimulatorEvents {
  /** A VM changed status (hostname, status); `deleted` when it is gone. */
  state: [hostname: string, status: VmStatus | 'deleted']
  /** Every API request, with its raw (still encoded) URL. */
  request: [method: string, rawUrl: string]
}

export class SlicerSimulator extends EventEmitter<SimulatorEvents> {
  readonly vms = new Map<string, SimulatedVm>()
  /** GET /nodes and GET /hostgroup/{g}/nodes answered (what a provider's list() costs). */
  listCalls = 0
  /** Count per `METHOD /route` (e.g. `POST /vm/:h/resume`). */
  readonly calls = new Map<string, number>()
  token: string | undefined

  private server: Server | undefined
  private address: { host: string; port: number } | { socket: string }
  private readonly groups: readonly string[]
  private readonly appPort: number
  private readonly ipPrefix: string
  private readonly app: { command: string; args: readonly string[] }
  private readonly bootTimeoutMs: number
  private nextIp = 2
  private readonly counters = new Map<string, number>()
  private closed = false

  private constructor(options: SimulatorOptions) {
    super()
    this.token = options.token
    this.groups = options.hostGroups ?? ['apps']
    this.appPort = options.appPort ?? 8080
    this.ipPrefix = options.ipPrefix ?? `127.${1 + Math.floor(Math.random() * 254)}.${Math.floor(Math.random() * 256)}`
    this.app = options.app ?? { command: process.execPath, args: [VM_APP] }
    this.bootTimeoutMs = options.bootTimeoutMs ?? 15_000
    const listen = options.listen ?? '127.0.0.1:0'
    if (listen.startsWith('unix:') || listen.startsWith('/')) {
      this.address = { socket: listen.startsWith('unix:') ? listen.slice('unix:'.length) : listen }
    } else {
      const colon = listen.lastIndexOf(':')
      this.address = { host: listen.slice(0, colon) || '127.0.0.1', port: Number(listen.slice(colon + 1)) }
    }
  }

  static async start(options: SimulatorOptions = {}): Promise<SlicerSimulator> {
    const sim = new SlicerSimulator(options)
    await sim.startApi()
    return sim
  }

  /** What a client puts in `url`: `http://127.0.0.1:PORT` or the socket path. */
  get url(): string {
    return 'socket' in this.address ? this.address.socket : `http://${this.address.host}:${this.address.port}`
  }

  /** Start answering (again, after stopApi) on the same address. VMs are not touched. */
  async startApi(): Promise<void> {
    if (this.server) return
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        const e = err instanceof ApiError ? err : new ApiError(500, 'internal', (err as Error).message)
        if (!res.headersSent) send(res, e.status, { error: e.message, code: e.code }, req.method === 'HEAD')
        else res.destroy()
      })
    })
    if ('socket' in this.address) {
      try {
        unlinkSync(this.address.socket)
      } catch {
        // no stale socket
      }
      server.listen(this.address.socket)
    } else {
      server.listen(this.address.port, this.address.host)
    }
    await once(server, 'listening')
    const bound = server.address()
    if (!('socket' in this.address) && bound && typeof bound === 'object') this.address = { host: this.address.host, port: bound.port }
    this.server = server
  }

  /** Stop answering: the API is down (connections refused); VMs keep running. */
  async stopApi(): Promise<void> {
    const server = this.server
    if (!server) return
    this.server = undefined
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  node(hostname: string): SimulatedVm | undefined {
    return this.vms.get(hostname)
  }

  /** Resolve when `hostname` reaches `status` (or is deleted, for 'deleted'). */
  waitFor(hostname: string, status: VmStatus | 'deleted'): Promise<void> {
    const vm = this.vms.get(hostname)
    if ((status === 'deleted' && !vm) || vm?.status === status) return Promise.resolve()
    return new Promise((resolve) => {
      const listener = (h: string, s: VmStatus | 'deleted') => {
        if (h === hostname && s === status) {
          this.off('state', listener)
          resolve()
        }
      }
      this.on('state', listener)
    })
  }

  // ---- operations (used by the HTTP API and directly by tests) ----

  async createNode(group: string, body: { tags?: readonly string[]; persistent?: boolean } = {}): Promise<SimulatedVm> {
    if (!this.groups.includes(group)) throw new ApiError(404, 'hostgroup_not_found', `host group ${group} does not exist`)
    const tags = body.tags ?? []
    if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) throw new ApiError(400, 'bad_request', 'tags must be an array of strings')
    const portTag = tags.map((t) => /^relight\.port=(\d{1,5})$/.exec(t)?.[1]).find((p) => p !== undefined)
    const n = (this.counters.get(group) ?? 0) + 1
    this.counters.set(group, n)
    if (this.nextIp > 254) throw new ApiError(409, 'no_addresses', 'the simulator has no loopback address left')
    const vm: SimulatedVm = {
      hostname: `${group}-${n}`,
      hostgroup: group,
      ip: `${this.ipPrefix}.${this.nextIp++}`,
      port: portTag === undefined ? this.appPort : Number(portTag),
      tags: [...tags],
      persistent: body.persistent === true,
      created_at: new Date().toISOString(),
      status: 'Stopped',
      snapshot: false,
      child: undefined,
      chain: Promise.resolve(),
    }
    this.vms.set(vm.hostname, vm)
    await this.serial(vm, () => this.boot(vm))
    return vm
  }

  async deleteNode(hostname: string): Promise<void> {
    const vm = this.vmOr404(hostname)
    await this.serial(vm, async () => {
      await this.kill(vm)
      this.vms.delete(hostname)
      this.emit('state', hostname, 'deleted')
    })
  }

  pause(hostname: string): Promise<void> {
    const vm = this.vmOr404(hostname)
    return this.serial(vm, async () => {
      if (vm.status === 'Paused') return
      if (vm.status !== 'Running') throw new ApiError(409, 'not_running', `${hostname} is ${vm.status}`)
      vm.child?.kill('SIGSTOP')
      this.set(vm, 'Paused')
    })
  }

  resume(hostname: string): Promise<void> {
    const vm = this.vmOr404(hostname)
    return this.serial(vm, async () => {
      if (vm.status === 'Running') return
      if (vm.status !== 'Paused') throw new ApiError(409, 'not_paused', `${hostname} is ${vm.status}`)
      vm.child?.kill('SIGCONT')
      this.set(vm, 'Running')
    })
  }

  suspend(hostname: string): Promise<void> {
    const vm = this.vmOr404(hostname)
    return this.serial(vm, async () => {
      if (vm.status === 'Stopped') {
        if (vm.snapshot) return
        throw new ApiError(409, 'not_running', `${hostname} is stopped`)
      }
      await this.kill(vm)
      vm.snapshot = true
      this.set(vm, 'Stopped')
    })
  }

  restore(hostname: string): Promise<void> {
    const vm = this.vmOr404(hostname)
    return this.serial(vm, async () => {
      if (vm.status === 'Running') return
      if (vm.status === 'Paused' || !vm.snapshot) throw new ApiError(409, 'no_snapshot', `${hostname} has no suspended snapshot to restore`)
      await this.boot(vm)
      vm.snapshot = false
    })
  }

  /** A non-persistent VM is destroyed by a shutdown (its disk was ephemeral). */
  shutdown(hostname: string): Promise<void> {
    const vm = this.vmOr404(hostname)
    return this.serial(vm, async () => {
      await this.kill(vm)
      vm.snapshot = false
      if (!vm.persistent) {
        this.vms.delete(hostname)
        this.emit('state', hostname, 'deleted')
        return
      }
      this.set(vm, 'Stopped')
    })
  }

  relaunch(hostname: string): Promise<void> {
    const vm = this.vmOr404(hostname)
    return this.serial(vm, async () => {
      if (vm.status === 'Running') return
      if (!vm.persistent) throw new ApiError(409, 'not_persistent', `${hostname} is not persistent`)
      if (vm.status !== 'Stopped') throw new ApiError(409, 'not_stopped', `${hostname} is ${vm.status}`)
      await this.boot(vm)
    })
  }

  /** Kill every VM and stop the API. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.stopApi()
    await Promise.all([...this.vms.values()].map((vm) => this.kill(vm)))
    this.vms.clear()
    if ('socket' in this.address) {
      try {
        unlinkSync(this.address.socket)
      } catch {
        // already gone
      }
    }
  }

  // ---- HTTP ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET'
    const raw = req.url ?? '/'
    this.emit('request', method, raw)
    const q = raw.indexOf('?')
    const query = new URLSearchParams(q === -1 ? '' : raw.slice(q + 1))
    let parts: string[]
    try {
      parts = (q === -1 ? raw : raw.slice(0, q)).split('/').slice(1).map((p) => decodeURIComponent(p))
    } catch {
      throw new ApiError(400, 'bad_path', 'malformed path encoding')
    }
    const head = method === 'HEAD'
    if (method === 'GET' && parts.length === 1 && parts[0] === 'healthz') return send(res, 200, { status: 'ok' })
    if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) {
      throw new ApiError(401, 'unauthorized', 'missing or invalid bearer token')
    }
    const route = (name: string) => this.calls.set(`${method} ${name}`, (this.calls.get(`${method} ${name}`) ?? 0) + 1)

    if (method === 'GET' && parts.length === 1 && parts[0] === 'nodes') {
      route('/nodes')
      this.listCalls++
      const tag = query.get('tag')
      const vms = [...this.vms.values()].filter((vm) => tag === null || vm.tags.includes(tag))
      return send(res, 200, vms.map((vm) => nodeJson(vm, true)))
    }
    if (parts[0] === 'hostgroup' && parts.length >= 3 && parts[2] === 'nodes') {
      const group = parts[1] as string
      if (parts.length === 3 && method === 'GET') {
        route('/hostgroup/:g/nodes')
        this.listCalls++
        if (!this.groups.includes(group)) throw new ApiError(404, 'hostgroup_not_found', `host group ${group} does not exist`)
        return send(res, 200, [...this.vms.values()].filter((vm) => vm.hostgroup === group).map((vm) => nodeJson(vm, false)))
      }
      if (parts.length === 3 && method === 'POST') {
        route('/hostgroup/:g/nodes')
        const body = await readJson(req)
        const vm = await this.createNode(group, body as { tags?: string[]; persistent?: boolean })
        return send(res, 201, { hostname: vm.hostname, ip: vm.ip, tags: vm.tags, persistent: vm.persistent, created_at: vm.created_at })
      }
      if (parts.length === 4 && method === 'DELETE') {
        route('/hostgroup/:g/nodes/:h')
        const vm = this.vmOr404(parts[3] as string)
        if (vm.hostgroup !== group) throw new ApiError(404, 'node_not_found', `${vm.hostname} is not in host group ${group}`)
        await this.deleteNode(vm.hostname)
        return send(res, 200, { message: `deleted ${vm.hostname}`, disk_removed: 'true' })
      }
    }
    if (parts[0] === 'vm' && parts.length === 3) {
      const hostname = parts[1] as string
      const op = parts[2] as string
      if (op === 'health' && (method === 'GET' || head)) {
        route('/vm/:h/health')
        const vm = this.vmOr404(hostname)
        if (vm.status !== 'Running') throw new ApiError(503, 'agent_unavailable', `${hostname} is ${vm.status}`)
        return send(res, 200, { hostname, agent_version: 'simulator' }, head)
      }
      const ops: Record<string, (h: string) => Promise<void>> = {
        pause: (h) => this.pause(h),
        resume: (h) => this.resume(h),
        suspend: (h) => this.suspend(h),
        restore: (h) => this.restore(h),
        shutdown: (h) => this.shutdown(h),
        relaunch: (h) => this.relaunch(h),
      }
      const fn = ops[op]
      if (fn && method === 'POST') {
        route(`/vm/:h/${op}`)
        await fn(hostname)
        const vm = this.vms.get(hostname)
        return send(res, 200, { hostname, status: vm?.status ?? 'Deleted' })
      }
    }
    throw new ApiError(404, 'not_found', `no route ${method} ${parts.map((p) => `/${p}`).join('')}`)
  }

  // ---- VM processes ----

  private vmOr404(hostname: string): SimulatedVm {
    const vm = this.vms.get(hostname)
    if (!vm) throw new ApiError(404, 'node_not_found', `node ${hostname} not found`)
    return vm
  }

  private serial<T>(vm: SimulatedVm, op: () => Promise<T>): Promise<T> {
    const next = vm.chain.then(op, op)
    vm.chain = next.catch(() => undefined)
    return next
  }

  private set(vm: SimulatedVm, status: VmStatus): void {
    vm.status = status
    this.emit('state', vm.hostname, status)
  }

  /** Start the VM's app and resolve once it accepts connections (the agent is then healthy). */
  private async boot(vm: SimulatedVm): Promise<void> {
    const child = spawn(this.app.command, [...this.app.args], {
      stdio: 'ignore',
      env: { ...process.env, PORT: String(vm.port), HOST: vm.ip, NAME: vm.hostname },
    })
    vm.child = child
    const exited = new AbortController()
    child.once('exit', () => {
      exited.abort(new ApiError(500, 'boot_failed', `${vm.hostname}: the VM's app exited`))
      if (vm.child === child) {
        vm.child = undefined
        if (vm.status !== 'Stopped' && this.vms.has(vm.hostname)) this.set(vm, 'Stopped')
      }
    })
    const signal = AbortSignal.any([exited.signal, AbortSignal.timeout(this.bootTimeoutMs)])
    try {
      await waitReady(`${vm.ip}:${vm.port}`, 'tcp', signal)
    } catch (err) {
      await this.kill(vm)
      throw err instanceof ApiError ? err : new ApiError(500, 'boot_failed', `${vm.hostname} did not listen on ${vm.ip}:${vm.port}`)
    }
    this.set(vm, 'Running')
  }

  /** End the VM's app (SIGKILL works on a SIGSTOPped process too) and wait for it. */
  private async kill(vm: SimulatedVm): Promise<void> {
    const child = vm.child
    if (!child) return
    vm.child = undefined
    if (child.exitCode !== null || child.signalCode !== null) return
    const gone = once(child, 'exit')
    child.kill('SIGKILL')
    await gone
  }
}

function nodeJson(vm: SimulatedVm, withStatus: boolean): Record<string, unknown> {
  return {
    hostname: vm.hostname,
    hostgroup: vm.hostgroup,
    ip: vm.ip,
    tags: vm.tags,
    ...(withStatus ? { status: vm.status } : {}),
    created_at: vm.created_at,
    persistent: vm.persistent,
    cpus: 1,
    ram_bytes: 1024 * 1024 * 1024,
    arch: process.arch === 'arm64' ? 'arm64' : 'amd64',
  }
}

function send(res: ServerResponse, status: number, body: unknown, head = false): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(head ? undefined : text)
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let text = ''
  for await (const chunk of req) {
    text += String(chunk)
    if (text.length > 64 * 1024) throw new ApiError(413, 'too_large', 'request body too large')
  }
  if (text.trim() === '') return {}
  try {
    const body: unknown = JSON.parse(text)
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object')
    return body
  } catch {
    throw new ApiError(400, 'bad_request', 'the body must be a JSON object')
  }
}
