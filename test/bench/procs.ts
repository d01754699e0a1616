/**
 * Every process the benchmark starts, and only those: tracked by pid, stopped by pid (SIGTERM,
 * then SIGKILL) when a section ends, and killed on exit if anything is left.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process'
import { closeSync, openSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sleep } from './stats.js'

const live = new Set<ChildProcess>()
/** Processes started through other helpers (Caddy), known only by pid. */
const livePids = new Set<number>()

/** Asynchronous clean-ups (containers to remove) run by stopAllTracked when the bench is interrupted. */
const cleanups = new Set<() => Promise<void>>()

/** Register a clean-up for an interrupted run; returns the function that forgets it (call it once done). */
export function trackCleanup(fn: () => Promise<void>): () => void {
  cleanups.add(fn)
  return () => cleanups.delete(fn)
}

export function trackPid(pid: number): () => void {
  livePids.add(pid)
  return () => livePids.delete(pid)
}

/** Remember a child until it exits; returns the function that forgets it. */
export function track(child: ChildProcess): () => void {
  live.add(child)
  const forget = () => live.delete(child)
  child.once('exit', forget)
  return forget
}

/**
 * Interrupted (SIGINT/SIGTERM): SIGTERM everything still running, so sidecars stop their own
 * children (process-provider apps run in their own process groups), run the registered clean-ups
 * (containers), then SIGKILL what is left.
 */
export async function stopAllTracked(graceMs = 5000): Promise<void> {
  const children = [...live].filter((c) => c.exitCode === null && c.signalCode === null)
  await Promise.all(children.map((c) => stop(c, graceMs)))
  for (const pid of livePids) {
    try {
      process.kill(pid, 'SIGTERM')
    } catch {
      // already gone
    }
  }
  for (const fn of [...cleanups]) await fn().catch(() => undefined)
  cleanups.clear()
  killAllTracked()
}

/** Last resort on exit: SIGKILL what we started and did not stop (each by its own pid). */
export function killAllTracked(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
  live.clear()
  for (const pid of livePids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  livePids.clear()
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export function stop(child: ChildProcess, graceMs = 8000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

/** Resolve once host:port accepts a TCP connection (1 ms between attempts), or reject at `timeoutMs`. */
export async function waitPort(host: string, port: number, timeoutMs = 15_000, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port })
      s.once('connect', () => {
        // A loopback connect to a free port in the ephemeral range can pick that very port as its
        // own source and connect to itself (TCP simultaneous open): not a listener. Polled every
        // millisecond while a loaded machine starts the sidecar, this happened, and the bench
        // went on before the sidecar listened (set-up fl/b: 502).
        const self = s.localPort === port && s.localAddress === s.remoteAddress
        s.destroy()
        resolve(!self)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (child && (child.exitCode !== null || child.signalCode !== null)) throw new Error(`process ${child.pid} exited before listening on ${host}:${port}`)
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`)
    await sleep(1)
  }
}

const DIST_ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const SIDECAR_MAIN = join(DIST_ROOT, 'sidecar', 'main.js')
export const HTTP_APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const CHILD = fileURLToPath(new URL('./sidecar-child.js', import.meta.url))
const BARE = fileURLToPath(new URL('./bare-responder.js', import.meta.url))

/** BENCH_CHILD_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles every sidecar the bench starts. */
function childNodeArgs(): string[] {
  return process.env.BENCH_CHILD_NODE_ARGS?.split(' ').filter(Boolean) ?? []
}

export interface RunningProcess {
  readonly child: ChildProcess
  readonly pid: number
  stop(): Promise<void>
}

/**
 * The real CLI, `node dist/sidecar/main.js serve --config FILE --log-format json`, in its own
 * process, logs to a file. Resolves once `waitFor` (its HTTP address) accepts connections.
 */
export async function startSidecarCli(dir: string, name: string, yaml: string, waitFor: { host: string; port: number } | { path: string }, main = SIDECAR_MAIN): Promise<RunningProcess> {
  const config = join(dir, `${name}.yaml`)
  writeFileSync(config, yaml)
  const log = openSync(join(dir, `${name}.log`), 'a')
  const child = spawn(process.execPath, [...childNodeArgs(), main, 'serve', '--config', config, '--log-format', 'json'], { stdio: ['ignore', log, log] })
  closeSync(log)
  track(child)
  if ('path' in waitFor) await waitUnix(waitFor.path, 15_000, child)
  else await waitPort(waitFor.host, waitFor.port, 15_000, child)
  return { child, pid: child.pid as number, stop: () => stop(child) }
}

async function waitUnix(path: string, timeoutMs: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ path })
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`process ${child.pid} exited before listening on ${path}`)
    if (Date.now() > deadline) throw new Error(`nothing listens on ${path} after ${timeoutMs} ms`)
    await sleep(5)
  }
}

/** Messages between the driver and test/bench/sidecar-child.ts. */
export interface ChildStats {
  backends: number
  calls: { list: number; wake: number; sleep: number }
  rssMb: number
  heapUsedMb: number
}

export interface SyntheticSidecar extends RunningProcess {
  readonly address: string
  request<T>(message: Record<string, unknown>): Promise<T>
}

export interface SyntheticChildOptions {
  readonly count: number
  readonly upstream: string
  readonly domain: string
  readonly initial?: 'running' | 'paused' | 'stopped'
  readonly wakeDelayMs?: number
  readonly relistOnMiss?: boolean
  /** Extra YAML for the sidecar config (after listen). */
  readonly yaml?: string
}

/** The sidecar (real startSidecar, real config parsing and logger) with the synthetic provider, in a child process. */
export async function startSyntheticSidecar(dir: string, name: string, options: SyntheticChildOptions): Promise<SyntheticSidecar> {
  const log = openSync(join(dir, `${name}.log`), 'a')
  const child = fork(CHILD, [JSON.stringify(options)], { stdio: ['ignore', log, log, 'ipc'], execArgv: childNodeArgs() })
  closeSync(log)
  track(child)
  let seq = 0
  const pending = new Map<number, (value: unknown) => void>()
  let onReady: ((address: string) => void) | undefined
  child.on('message', (raw) => {
    const m = raw as { id?: number; type?: string; address?: string; result?: unknown }
    if (m.type === 'ready' && m.address) onReady?.(m.address)
    else if (m.id !== undefined) {
      pending.get(m.id)?.(m.result)
      pending.delete(m.id)
    }
  })
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: sidecar child did not start in 30 s`)), 30_000)
    onReady = (a) => {
      clearTimeout(timer)
      resolve(a)
    }
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${name}: sidecar child exited with ${code}; see ${join(dir, `${name}.log`)}`))
    })
  })
  return {
    child,
    pid: child.pid as number,
    address,
    request: <T>(message: Record<string, unknown>) =>
      new Promise<T>((resolve, reject) => {
        const id = ++seq
        const timer = setTimeout(() => reject(new Error(`${name}: no answer to ${String(message.type)}`)), 120_000)
        pending.set(id, (v) => {
          clearTimeout(timer)
          resolve(v as T)
        })
        child.send({ ...message, id })
      }),
    stop: () => stop(child),
  }
}

/** A bare Node http server answering 200 + X-Relight-Upstream (the floor of any Node sidecar). */
export async function startBareResponder(port: number, upstream: string): Promise<RunningProcess> {
  const child = spawn(process.execPath, [BARE], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, BENCH_BARE_PORT: String(port), BENCH_BARE_UPSTREAM: upstream } })
  track(child)
  await waitPort('127.0.0.1', port, 15_000, child)
  return { child, pid: child.pid as number, stop: () => stop(child) }
}
