/**
 * Access-log flood: every connection the sidecar allows (access_log_max_connections) streams
 * 20 MB lines as fast as it can, from a separate process, while the driver sends paced
 * /_relight/auth requests and records their latency. Target: /auth p99 under 50 ms, RSS flat
 * (over-long lines are skipped as they stream by, never buffered). The same paced requests
 * without the flood are the reference, in alternation (quiet, flood, quiet, flood…) so both
 * see the same load from the rest of the machine.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { freePort } from '../helpers/net.js'
import type { BenchContext } from './context.js'
import { expectAnswer, get } from './http.js'
import { HTTP_APP, startSidecarCli, track } from './procs.js'
import { load, percentile, round, rssMb, sleep } from './stats.js'

const HOST = 'app.logflood.test'
const MAX_CONNECTIONS = 4
const LINE_MB = 20

export interface LatencySummary {
  n: number
  p50: number
  p99: number
  max: number
}

export interface LogFloodResult {
  connections: number
  lineMb: number
  seconds: number
  rounds: number
  quiet: LatencySummary
  flood: LatencySummary
  /** MB the flooders wrote during the measurement. */
  floodMb: number
  rssMb: { before: number; max: number; end: number }
  load: [number, number, number]
}

function summary(lat: readonly number[]): LatencySummary {
  return { n: lat.length, p50: round(percentile(lat, 50)), p99: round(percentile(lat, 99)), max: round(Math.max(...lat)) }
}

/** Paced /auth requests (one every `everyMs`, one at a time) for `seconds`; latencies in ms. */
async function paced(port: number, seconds: number, everyMs = 5): Promise<number[]> {
  const lat: number[] = []
  const end = performance.now() + seconds * 1000
  while (performance.now() < end) {
    const a = await get({ port }, '/_relight/auth?', HOST, { headers: { 'x-relight-snippet': '2' } })
    if (a.status !== 200) throw new Error(`logflood: /auth answered ${a.status}`)
    lat.push(a.total)
    await sleep(everyMs)
  }
  return lat
}

const FLOODER = `
const net = require('node:net')
const [path, conns, mb] = process.argv.slice(1)
const line = Buffer.alloc(Number(mb) << 20, 0x61); line[line.length - 1] = 0x0a
let written = 0, stopping = false
process.on('SIGTERM', () => { stopping = true; process.stdout.write(String(written) + '\\n', () => process.exit(0)) })
for (let i = 0; i < Number(conns); i++) {
  const s = net.connect(path)
  s.on('error', () => undefined)
  const pump = () => { while (!stopping && s.write(line)) written += line.length; if (!stopping) written += line.length }
  s.on('connect', pump)
  s.on('drain', pump)
}
`

export async function runLogFlood(ctx: BenchContext): Promise<LogFloodResult> {
  const seconds = ctx.quick ? 3 : 5
  const rounds = ctx.quick ? 1 : 3
  // The backend: the test app, started by the sidecar (always_on); only probed, never proxied to.
  const backendPort = await freePort()
  const port = await freePort()
  const accessSock = join(ctx.dir, 'logflood-access.sock')
  const yaml = `listen: 127.0.0.1:${port}
access_log: unix:${accessSock}
access_log_max_connections: ${MAX_CONNECTIONS}
log_level: warn
providers:
  process:
    apps:
      - name: app
        hosts: [${HOST}]
        command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(HTTP_APP)}]
        env: { PORT: "{{port}}" }
        port: ${backendPort}
        always_on: true
        stdout: "null"
        stderr: "null"
        grace_period: 2s
`
  const sidecar = await startSidecarCli(ctx.dir, 'logflood', yaml, { host: '127.0.0.1', port })
  try {
    expectAnswer('logflood: /auth', await get({ port }, '/_relight/auth?', HOST), 200)
    await paced(port, 1) // warm-up
    const quietLat: number[] = []
    const floodLat: number[] = []
    const samples: number[] = []
    let floodBytes = 0
    const rssBefore = (await rssMb(sidecar.pid))?.rss ?? Number.NaN
    for (let r = 0; r < rounds; r++) {
      quietLat.push(...(await paced(port, seconds)))
      const flooder = spawn(process.execPath, ['-e', FLOODER, accessSock, String(MAX_CONNECTIONS), String(LINE_MB)], { stdio: ['ignore', 'pipe', 'inherit'] })
      track(flooder)
      let out = ''
      flooder.stdout.on('data', (d: Buffer) => (out += d.toString()))
      await sleep(500) // let every connection get going
      let sampling = true
      const sampler = (async () => {
        while (sampling) {
          const m = await rssMb(sidecar.pid)
          if (m) samples.push(m.rss)
          await sleep(250)
        }
      })()
      floodLat.push(...(await paced(port, seconds)))
      sampling = false
      await sampler
      const exited = new Promise((res) => flooder.once('exit', res))
      flooder.kill('SIGTERM')
      await exited
      floodBytes += Number(out.trim()) || 0
      // the flooder's connections are gone before the next quiet phase
      await sleep(200)
    }
    const floodMb = round(floodBytes / (1 << 20), 0)
    const rssEnd = (await rssMb(sidecar.pid))?.rss ?? Number.NaN
    const quiet = summary(quietLat)
    const flood = summary(floodLat)
    const result: LogFloodResult = {
      connections: MAX_CONNECTIONS,
      lineMb: LINE_MB,
      seconds,
      rounds,
      quiet,
      flood,
      floodMb,
      rssMb: { before: rssBefore, max: Math.max(...samples), end: rssEnd },
      load: load(),
    }
    ctx.note(`logflood: quiet p99 ${quiet.p99} ms, flood p99 ${flood.p99} ms (${floodMb} MB written), RSS ${result.rssMb.before} → max ${result.rssMb.max} MB`)
    return result
  } finally {
    await sidecar.stop().catch(() => undefined)
  }
}
