/**
 * `npm run demo`: Caddy + relight-sidecar + two example apps on loopback, as in
 * examples/processes/. Prints what to try and shows apps starting and stopping.
 *
 *   --once   run the walk-through (cold start, idle stop, wake from pause) and exit
 *   --fail-after-caddy   fail on purpose once Caddy is up (tests that a failure leaves nothing running)
 *
 * Whatever ends it (Ctrl-C, SIGTERM, an error), Caddy, the sidecar and the apps are stopped.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { parseConfig } from '../sidecar/config/load.js'
import { type Sidecar, startSidecar } from '../sidecar/daemon.js'
import { createLogger } from '../sidecar/logger.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const EXAMPLE = join(ROOT, 'examples/processes')
const CADDY_PORT = 8080
const once = process.argv.includes('--once')

/** What is running, for the clean-up on any exit. */
let caddy: ChildProcess | undefined
let sidecar: Sidecar | undefined
process.on('exit', () => {
  // last resort (process.exit without stop()): Caddy must not outlive the demo
  if (caddy && caddy.exitCode === null && caddy.signalCode === null) caddy.kill('SIGKILL')
})

let stopping: Promise<void> | undefined
/** Stop Caddy, then the sidecar (its apps get SIGTERM), then exit with `code`. */
function stop(code: number): Promise<void> {
  stopping ??= (async () => {
    say('\nstopping Caddy and the sidecar (apps get SIGTERM)…')
    const c = caddy
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((r) => c.once('exit', r))
      c.kill('SIGTERM')
      await exited
    }
    await sidecar?.close()
    process.exit(code)
  })()
  return stopping
}

const say = (text: string) => process.stdout.write(`\x1b[1m${text}\x1b[0m\n`)

function ensureCaddy(): void {
  if (spawnSync('caddy', ['version'], { stdio: 'ignore' }).status === 0) return
  const command = 'apt-get update && apt-get install -y caddy'
  const root = process.getuid?.() === 0
  const apt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0
  if (!root || !apt) {
    process.stderr.write(`Caddy is not installed. Install it, then run the demo again:\n  sudo sh -c '${command}'\n(or see https://caddyserver.com/docs/install)\n`)
    process.exit(1)
  }
  say(`Caddy is not installed; installing Debian's package: ${command}`)
  const r = spawnSync('sh', ['-c', command], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  if (r.status !== 0 || spawnSync('caddy', ['version'], { stdio: 'ignore' }).status !== 0) {
    process.stderr.write(`Installing Caddy failed. Run this yourself and try again:\n  ${command}\n`)
    process.exit(1)
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

function startCaddy(): Promise<ChildProcess> {
  const child = spawn('caddy', ['run', '--config', join(EXAMPLE, 'Caddyfile'), '--adapter', 'caddyfile'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  caddy = child // stopped on any exit from here on
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`caddy did not start within 15 s:\n${output}`)), 15_000)
    const onData = (d: Buffer) => {
      output += d.toString()
      if (output.includes('serving initial configuration')) {
        clearTimeout(timer)
        child.stdout?.off('data', onData)
        child.stderr?.off('data', onData)
        child.stdout?.resume()
        child.stderr?.resume()
        resolve(child)
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`caddy exited with code ${code}:\n${output}`))
    })
  })
}

async function fetchText(host: string, path = '/', accept = '*/*'): Promise<{ status: number; body: string; ms: number }> {
  const t0 = performance.now()
  const res = await request(`http://127.0.0.1:${CADDY_PORT}${path}`, { headers: { host, accept } })
  const body = await res.body.text()
  return { status: res.statusCode, body, ms: Math.round(performance.now() - t0) }
}

async function main(): Promise<void> {
  ensureCaddy()
  const configText = readFileSync(join(EXAMPLE, 'relight.yaml'), 'utf8')
  const config = parseConfig(configText, 'examples/processes/relight.yaml')
  const busy: number[] = []
  for (const port of [CADDY_PORT, 9123, 3001, 3002]) if (!(await portFree(port))) busy.push(port)
  if (busy.length > 0) {
    process.stderr.write(`The demo needs loopback ports 8080, 9123, 3001 and 3002; in use now: ${busy.join(', ')}. Stop what uses them (another user's demo, on a shared machine?) and run again.\n`)
    process.exit(1)
  }
  // Fixed ports and directory: one demo per machine. Another user's leftover directory is named, not tripped over.
  const socketDir = dirname(config.access_log?.slice('unix:'.length) ?? '/tmp/relight-demo/x')
  const owner = existsSync(socketDir) ? statSync(socketDir).uid : undefined
  if (owner !== undefined && owner !== process.getuid?.()) {
    process.stderr.write(`The demo keeps its access-log socket in ${socketDir}, which belongs to uid ${owner} (another user's demo?). Remove it (or ask them to) and run again.\n`)
    process.exit(1)
  }
  mkdirSync(socketDir, { recursive: true })

  say('relight-sidecar demo: Caddy on http://127.0.0.1:8080, the sidecar on 127.0.0.1:9123')
  const logger = createLogger('info', 'pretty')
  process.on('SIGINT', () => void stop(0))
  process.on('SIGTERM', () => void stop(0))
  const running = await startSidecar(config, { logger, baseDir: EXAMPLE })
  sidecar = running
  await startCaddy()
  if (process.argv.includes('--fail-after-caddy')) throw new Error('failing on purpose (--fail-after-caddy)')

  say(`
Both apps are asleep (stopped) until a request comes. Try:
  curl http://hello.localhost:8080/          plain HTTP app: starts on the first request, stops after 15 s idle
  curl -N http://clock.localhost:8080/events  SSE stream: keeps "clock" awake while it is open; paused 15 s after
  open http://clock.localhost:8080/ in a browser (a waiting page shows if a wake takes over 2 s)
  curl http://nope.localhost:8080/           unknown host: 404 from the sidecar
  curl 'http://127.0.0.1:9123/_relight/ask?domain=hello.localhost'   on-demand TLS check
Watch the log below. Ctrl-C stops everything.
`)
  say('walk-through: first request to hello.localhost (cold start)…')
  const cold = await fetchText('hello.localhost')
  say(`  ${cold.status} in ${cold.ms} ms: ${cold.body.trim()}`)
  const warm = await fetchText('hello.localhost', '/again')
  say(`  ${warm.status} in ${warm.ms} ms (awake now): ${warm.body.trim()}`)
  const unknown = await fetchText('nope.localhost')
  say(`  nope.localhost → ${unknown.status} ${JSON.parse(unknown.body).code}`)

  if (once) {
    const backend = running.registry.get('process:hello')
    say(`waiting for hello to go idle (${config.defaults.idle_timeout / 1000} s)…`)
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (backend?.phase === 'asleep') {
          clearInterval(t)
          resolve()
        }
      }, 100)
    })
    const again = await fetchText('hello.localhost')
    say(`  woke again: ${again.status} in ${again.ms} ms`)
    await stop(again.status === 200 && cold.status === 200 && unknown.status === 404 ? 0 : 1)
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`)
  void stop(1)
})
