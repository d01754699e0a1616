/** Runs wrk (Debian's package) as its own process and parses what it prints. */
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { load, round } from './stats.js'
import { track } from './procs.js'

export interface WrkOptions {
  readonly url: string
  readonly seconds: number
  readonly connections: number
  readonly threads: number
  readonly headers?: Record<string, string>
  /** Path of a Lua script (-s). */
  readonly script?: string
  /** Give up this long after the run should have ended. */
  readonly graceMs?: number
}

export interface WrkResult {
  rps: number
  requests: number
  /** Latency percentiles, ms. */
  p50: number
  p90: number
  p99: number
  non2xx: number
  socketErrors: number
  /** Load averages when the run ended. */
  load: [number, number, number]
}

export function wrkInstalled(): boolean {
  return spawnSync('wrk', ['--version'], { stdio: 'ignore' }).status !== null && spawnSync('which', ['wrk'], { stdio: 'ignore' }).status === 0
}

/** `612.34us`, `1.20ms`, `2.00s`, `3.00m` → ms. */
export function parseDuration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim())
  if (!m) return Number.NaN
  const v = Number(m[1])
  switch (m[2]) {
    case 'us':
      return v / 1000
    case 'ms':
      return v
    case 's':
      return v * 1000
    default:
      return v * 60_000
  }
}

export function parseWrk(out: string): Omit<WrkResult, 'load'> {
  const pct = (p: string) => parseDuration(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out)?.[1] ?? '')
  const rps = Number(/^Requests\/sec:\s+([\d.]+)/m.exec(out)?.[1] ?? Number.NaN)
  const requests = Number(/^\s+(\d+) requests in/m.exec(out)?.[1] ?? Number.NaN)
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const socketErrors = sock ? sock.slice(1).reduce((s, x) => s + Number(x), 0) : 0
  if (!Number.isFinite(rps)) throw new Error(`could not parse wrk output:\n${out}`)
  return { rps: round(rps, 0), requests, p50: round(pct('50'), 3), p90: round(pct('90'), 3), p99: round(pct('99'), 3), non2xx, socketErrors }
}

export function runWrk(options: WrkOptions): Promise<WrkResult> {
  const args = ['-t', String(options.threads), '-c', String(options.connections), '-d', `${options.seconds}s`, '--latency', '--timeout', '5s']
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push('-H', `${k}: ${v}`)
  if (options.script) args.push('-s', options.script)
  args.push(options.url)
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const untrack = track(child)
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.seconds * 1000 + (options.graceMs ?? 10_000))
    child.once('error', (err) => {
      clearTimeout(timer)
      untrack()
      reject(err)
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      untrack()
      if (code !== 0) return reject(new Error(`wrk exited with ${code ?? signal}:\n${out}`))
      try {
        resolve({ ...parseWrk(out), load: load() })
      } catch (err) {
        reject(err)
      }
    })
  })
}

/**
 * wrk script: each request asks /_relight/auth for one of `count` known hosts, at random. The
 * requests are built once in init(), so wrk's own cost per request does not depend on `count`.
 */
export function knownHostsScript(dir: string, count: number, domain: string, path = '/_relight/auth'): string {
  const file = join(dir, `known-${count}.lua`)
  writeFileSync(
    file,
    `-- random known host among ${count}
local n = ${count}
local reqs = {}
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  for i = 1, n do
    reqs[i] = wrk.format("GET", "${path}", { ["Host"] = "app-" .. (i - 1) .. ".${domain}" })
  end
end
request = function()
  return reqs[math.random(1, n)]
end
`,
  )
  return file
}

/** wrk script: every request carries a Host no backend serves (never the same twice per thread). */
export function randomHostsScript(dir: string, domain: string, path = '/_relight/auth'): string {
  const file = join(dir, 'random-hosts.lua')
  writeFileSync(
    file,
    `-- unknown-host flood: a fresh random host on every request
local counter = 0
local tag = 0
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  tag = math.random(1, 1000000000)
end
request = function()
  counter = counter + 1
  local host = "r" .. tag .. "-" .. counter .. "-" .. math.random(1, 1000000000) .. ".${domain}"
  return wrk.format("GET", "${path}", { ["Host"] = host })
end
`,
  )
  return file
}
