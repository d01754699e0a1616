/** The sidecar as its own process (`relight-sidecar serve`), for tests that kill or signal it. */
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const MAIN = join(fileURLToPath(new URL('../../..', import.meta.url)), 'dist/sidecar/main.js')

export interface SidecarProcess {
  readonly child: ChildProcess
  readonly pid: number
  /** Log lines so far, parsed. */
  lines(): Record<string, unknown>[]
  /** Resolves with the first log line matching, waiting for it. */
  waitFor(match: (line: Record<string, unknown>) => boolean, what: string, timeout?: number): Promise<Record<string, unknown>>
  /** Resolves with the exit code (or signal) once the process is gone. */
  readonly exited: Promise<number | string>
}

/** `options.env` is added to this process's environment (e.g. faketime.ts's fakeTimeEnv for a skewed wall clock). */
export async function startSidecarProcess(config: string, args: string[] = [], options: { env?: Record<string, string> } = {}): Promise<SidecarProcess> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--config', config, '--log-format', 'json', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
  })
  const parsed: Record<string, unknown>[] = []
  let buffer = ''
  let stderr = ''
  const waiters = new Set<() => void>()
  child.stdout?.on('data', (d: Buffer) => {
    buffer += d.toString()
    let nl: number
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      // seenAt: when this process read the line (the test's clock; the child's may be skewed)
      try {
        parsed.push({ ...(JSON.parse(line) as Record<string, unknown>), seenAt: Date.now() })
      } catch {
        parsed.push({ msg: line, seenAt: Date.now() })
      }
    }
    for (const w of waiters) w()
  })
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')))
  const waitFor = (match: (line: Record<string, unknown>) => boolean, what: string, timeout = 15_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const found = parsed.find(match)
        if (!found) return
        cleanup()
        resolve(found)
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`timed out waiting for ${what}; log:\n${parsed.map((l) => JSON.stringify(l)).join('\n')}\n${stderr}`))
      }, timeout)
      const cleanup = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  const sc: SidecarProcess = { child, pid: child.pid as number, lines: () => parsed, waitFor, exited }
  // Generous: a node start-up on a busy 2-core machine can take many seconds. A sidecar that does
  // not come up is killed before the error, so no test file is held open by it.
  const started = await Promise.race([
    waitFor((l) => l.msg === 'relight-sidecar listening', 'the sidecar to listen', 60_000).then(() => true),
    exited.then(() => false),
  ]).catch(async (err: unknown) => {
    child.kill('SIGKILL')
    await exited
    throw err
  })
  if (!started) throw new Error(`the sidecar exited at start:\n${parsed.map((l) => JSON.stringify(l)).join('\n')}\n${stderr}`)
  return sc
}

/** SIGTERM and wait for the exit (SIGKILL after `timeout`). */
export async function stopSidecarProcess(sc: SidecarProcess | undefined, timeout = 15_000): Promise<number | string | undefined> {
  if (!sc || sc.child.exitCode !== null || sc.child.signalCode !== null) return undefined
  sc.child.kill('SIGTERM')
  const timer = setTimeout(() => sc.child.kill('SIGKILL'), timeout)
  const code = await sc.exited
  clearTimeout(timer)
  return code
}
