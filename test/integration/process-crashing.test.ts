/**
 * Process apps that cannot run, end to end through real Caddy: a crashing app is restarted on
 * the supervisor's backoff schedule whatever the traffic, and a port held by another program is
 * never routed.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { request } from 'undici'
import { parseConfig } from '../../sidecar/config/load.js'
import { isRelightError } from '../../sidecar/core/errors.js'
import { type Sidecar, startSidecar } from '../../sidecar/daemon.js'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { freePort, tempDir } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const skip = caddySkip()

function read(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

/** The sidecar with its log lines collected (JSON objects). */
async function sidecarWithLog(yaml: string, dir: string): Promise<{ sidecar: Sidecar; lines: () => Record<string, unknown>[] }> {
  const out: string[] = []
  const logger = pino({ level: 'debug' }, { write: (line: string) => void out.push(line) })
  const sidecar = await startSidecar(parseConfig(`listen: 127.0.0.1:0\naccess_log: unix:${dir}/access.sock\n${yaml}`, 'test'), { logger, baseDir: dir })
  return { sidecar, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) }
}

async function get(caddy: RunningCaddy, host: string) {
  const res = await request(`${caddy.url}/`, { headers: { host, accept: 'application/json' } })
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

describe('a crashing app under traffic, through Caddy', { skip }, () => {
  const tmp = tempDir('relight-crash-')
  let sc: Awaited<ReturnType<typeof sidecarWithLog>>
  let caddy: RunningCaddy

  before(async () => {
    const port = await freePort()
    sc = await sidecarWithLog(
      `providers:\n  process:\n    apps:\n      - { name: crash, hosts: [crash.localhost], command: [sh, -c, 'echo run >> ${tmp.dir}/runs; exit 1'], port: ${port}, stdout: "null", stderr: "null" }\n`,
      tmp.dir,
    )
    caddy = await startCaddy({ sidecar: sc.sidecar.address, accessLog: `unix/${tmp.dir}/access.sock` })
  })
  after(async () => {
    await caddy?.close()
    await sc?.sidecar.close()
    tmp.remove()
  })

  it('20 s of back-to-back requests start it a handful of times; every answer is a designed 5xx with Retry-After', async (t) => {
    const statuses = new Map<string, number>()
    let answers = 0
    let slowest = 0
    const end = Date.now() + 20_000
    while (Date.now() < end) {
      const t0 = Date.now()
      const res = await get(caddy, 'crash.localhost')
      slowest = Math.max(slowest, Date.now() - t0)
      answers++
      const code = (JSON.parse(res.body) as { code?: string }).code ?? `no code (${res.status})`
      const key = `${res.status} ${code}`
      statuses.set(key, (statuses.get(key) ?? 0) + 1)
      assert.ok(res.status === 502 || res.status === 503, `answer ${answers}: ${key}`)
      assert.ok(code === 'RELIGHT_ERR_BACKEND_EXITED' || code === 'RELIGHT_ERR_RESTART_BACKOFF', `answer ${answers}: ${key}`)
      assert.match(String(res.headers['retry-after']), /^\d+$/, `answer ${answers} has Retry-After`)
    }
    const runs = read(`${tmp.dir}/runs`).trim().split('\n').length
    const summary = `${runs} starts, ${answers} answers: ${JSON.stringify(Object.fromEntries(statuses))}, slowest ${slowest} ms`
    t.diagnostic(summary)
    // schedule 0 s, 0 s, 1 s, 2 s, 4 s, 8 s: six starts in 20 s (seven if the 16 s one lands)
    assert.ok(runs >= 4 && runs <= 8, summary)
    assert.ok(answers > 100, `requests were back to back: ${summary}`)
    assert.ok((statuses.get('503 RELIGHT_ERR_RESTART_BACKOFF') ?? 0) > answers / 2, `most requests are refused during the backoff: ${summary}`)
    const waiting = sc.lines().filter((l) => l.msg === 'process exited with code 1; restarting').map((l) => l.restart_in_ms)
    assert.deepEqual(waiting.slice(0, 5), [0, 1000, 2000, 4000, 8000], 'the supervisor kept its schedule')
  })
})

describe('a port held by another program, through Caddy', { skip }, () => {
  const tmp = tempDir('relight-port-')
  let sc: Awaited<ReturnType<typeof sidecarWithLog>>
  let caddy: RunningCaddy
  let squatter: Server
  let port: number

  before(async () => {
    port = await freePort()
    squatter = createServer((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nforeign'))
    await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve))
    sc = await sidecarWithLog(
      `providers:\n  process:\n    apps:\n      - { name: app, hosts: [app.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: app }, port: ${port}, stdout: "null" }\n`,
      tmp.dir,
    )
    caddy = await startCaddy({ sidecar: sc.sidecar.address, accessLog: `unix/${tmp.dir}/access.sock` })
  })
  after(async () => {
    squatter?.close()
    await caddy?.close()
    await sc?.sidecar.close()
    tmp.remove()
  })

  it('answers 503 RELIGHT_ERR_PORT_IN_USE with Retry-After, never the foreign program, and logs the holder pid', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await get(caddy, 'app.localhost')
      assert.equal(res.status, 503, res.body)
      assert.equal((JSON.parse(res.body) as { code: string }).code, 'RELIGHT_ERR_PORT_IN_USE')
      assert.equal(res.headers['retry-after'], '10')
      assert.doesNotMatch(res.body, /foreign/)
    }
    const warned = sc.lines().find((l) => l.holder_pid !== undefined)
    assert.ok(warned, 'a warning names the holder')
    assert.equal(warned.holder_pid, process.pid)
    assert.match(String(warned.msg), new RegExp(`127\\.0\\.0\\.1:${port} is held by another program \\(pid ${process.pid}, `))
  })

  it('starts the app once the port is free again', async () => {
    await new Promise<void>((resolve) => squatter.close(() => resolve()))
    const res = await until(async () => {
      const r = await get(caddy, 'app.localhost')
      return r.status === 200 ? r : undefined
    }, 'the app to be served')
    assert.match(res?.body ?? "", /^app pid \d+/)
  })

  it('a wake of the provider rejects with the holder pids in the error context', async () => {
    const other = createServer()
    const p2 = await freePort()
    await new Promise<void>((resolve) => other.listen(p2, '127.0.0.1', resolve))
    const { ProcessProvider } = await import('../../sidecar/providers/process/provider.js')
    const { processConfigSchema } = await import('../../sidecar/providers/process/config.js')
    const p = new ProcessProvider(processConfigSchema.parse({ apps: [{ name: 'x', command: ['true'], port: p2 }] }), pino({ level: 'silent' }))
    try {
      await assert.rejects(p.wake('x', AbortSignal.timeout(5000)), (err) => isRelightError(err, 'RELIGHT_ERR_PORT_IN_USE') && err.context.holderPid === process.pid)
    } finally {
      other.close()
      await p.close()
    }
  })
})
