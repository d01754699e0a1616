/**
 * Runs a real Caddy (Debian's 2.6.2 here) for end-to-end tests. Tests that need Caddy call
 * `caddySkip()`: on a machine without Caddy they skip with a printed reason, except under CI,
 * where a missing Caddy is a failure.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { freePort, tempDir } from './net.js'

export const SNIPPET = fileURLToPath(new URL('../../../caddy/relight.caddy', import.meta.url))

/** The snippet before tickets (version 1), as `relight_v1`: the upgrade path and the bench's before/after. */
export const SNIPPET_V1 = `(relight_v1) {
	route {
		request_header -X-Relight-Upstream
		forward_auth {args.0} {
			uri /_relight/auth?
			copy_headers X-Relight-Upstream
		}
		reverse_proxy {http.request.header.X-Relight-Upstream} {
			header_up -X-Relight-Upstream
		}
	}
}
`

let available: boolean | undefined
export function caddyInstalled(): boolean {
  available ??= spawnSync('caddy', ['version'], { stdio: 'ignore' }).status === 0
  return available
}

/** undefined when Caddy can run; a skip reason otherwise (throws under CI). */
export function caddySkip(): string | undefined {
  if (caddyInstalled()) return undefined
  if (process.env.CI) throw new Error('caddy is not installed, and CI requires the end-to-end tests (see .ci/run)')
  const reason = 'caddy is not installed (apt-get install caddy); skipping end-to-end tests'
  process.stderr.write(`# ${reason}\n`)
  return reason
}

export interface CaddyOptions {
  /** Sidecar address as the snippet takes it: `127.0.0.1:PORT` or `unix//path`. */
  readonly sidecar: string
  /** Caddy net log address (`unix//path` or `127.0.0.1:PORT`), or none. */
  readonly accessLog?: string
  /** Extra global options (e.g. on_demand_tls), or a function of Caddy's port (e.g. `https_port`). */
  readonly global?: string | ((port: number) => string)
  /** Replace the default site block (`http://:PORT { log …; import relight SIDECAR }`). */
  readonly sites?: (port: number) => string
  /**
   * Let site blocks with `tls internal` get certificates (`auto_https disable_redirects` instead
   * of `auto_https off`, which turns certificate management off altogether). Add
   * `skip_install_trust` to `global` with it.
   */
  readonly tls?: boolean
  /**
   * Run Caddy as this unprivileged user (e.g. Debian's `caddy`) through setpriv, with its
   * supplementary groups; its files are then in a directory that user owns. Needs root.
   */
  readonly user?: string
}

export interface RunningCaddy {
  readonly port: number
  readonly url: string
  readonly output: () => string
  readonly pid: number
  /** Caddy's storage directory (certificates live under `certificates/`). */
  readonly storage: string
  close(): Promise<void>
}

export async function startCaddy(options: CaddyOptions): Promise<RunningCaddy> {
  const port = await freePort()
  const tmp = tempDir('relight-caddy-')
  const log = options.accessLog ? `\tlog {\n\t\toutput net ${options.accessLog}\n\t\tformat json\n\t}\n` : ''
  const site = options.sites?.(port) ?? `http://:${port} {\n\tbind 127.0.0.1\n${log}\timport relight ${options.sidecar}\n}\n`
  let snippet = SNIPPET
  if (options.user) {
    // the user may not be able to read the checkout: give it its own copy
    snippet = join(tmp.dir, 'relight.caddy')
    copyFileSync(SNIPPET, snippet)
  }
  const caddyfile = `{\n\tadmin off\n\tauto_https ${options.tls ? 'disable_redirects' : 'off'}\n\tstorage file_system ${tmp.dir}/data\n${typeof options.global === 'function' ? options.global(port) : (options.global ?? '')}}\nimport ${snippet}\n${site}`
  const file = join(tmp.dir, 'Caddyfile')
  writeFileSync(file, caddyfile)
  const run = ['caddy', 'run', '--config', file, '--adapter', 'caddyfile']
  if (options.user) {
    spawnSync('chown', ['-R', `${options.user}:`, tmp.dir])
    chmodSync(tmp.dir, 0o755)
    run.unshift('setpriv', `--reuid=${options.user}`, `--regid=${options.user}`, '--init-groups', '--')
  }
  const child = spawn(run[0] as string, run.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HOME: tmp.dir, XDG_DATA_HOME: join(tmp.dir, 'data'), XDG_CONFIG_HOME: join(tmp.dir, 'config') },
  })
  let output = ''
  const collect = (d: Buffer) => {
    output += d.toString()
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  await waitServing(child, () => output).catch((err: unknown) => {
    tmp.remove()
    throw err
  })
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    pid: child.pid as number,
    storage: join(tmp.dir, 'data'),
    close: async () => {
      await stopChild(child)
      tmp.remove()
    },
  }
}

function waitServing(child: ChildProcess, output: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`caddy did not start within 15 s:\n${output()}`))
    }, 15_000)
    const check = () => {
      if (output().includes('serving initial configuration')) {
        clearTimeout(timer)
        child.stdout?.off('data', check)
        child.stderr?.off('data', check)
        resolve()
      }
    }
    child.stdout?.on('data', check)
    child.stderr?.on('data', check)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`caddy exited with code ${code}:\n${output()}`))
    })
  })
}

/** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone. */
export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

/** The certificate files (`*.crt`, sorted) in a Caddy storage directory. */
export function certificates(storage: string): string[] {
  const found: string[] = []
  const walk = (d: string) => {
    let entries
    try {
      entries = readdirSync(d, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      if (e.isDirectory()) walk(join(d, e.name))
      else if (e.name.endsWith('.crt')) found.push(e.name)
    }
  }
  walk(join(storage, 'certificates'))
  return found.sort()
}

/** One TLS handshake with Caddy on loopback, `servername` in the SNI: whether it succeeded (bounded: 15 s). */
export function handshake(port: number, servername: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false })
    socket.setTimeout(15_000, () => socket.destroy())
    socket.once('secureConnect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
    socket.once('close', () => resolve(false))
  })
}
