/**
 * `npm run soak:accounting`: mixed traffic through real Caddy and the shipped snippet for
 * `--minutes` (default 10), then checks that every app's in-flight count returns to 0 and every
 * app sleeps within idle_timeout plus a margin once the traffic stops. Not part of `npm test`.
 *
 *   npm run soak:accounting -- --minutes 10 --apps 3 --concurrency 24
 *
 * Traffic, chosen at random per worker: short requests, SSE streams held 0.2–5 s, websockets
 * closed by FIN, RST or a close frame, requests the client gives up on, 502s (the backend resets
 * the connection), and HTTP/2 streams (some reset). Everything runs on 127.0.0.1; every process
 * and server started here is stopped when it ends. Prints one JSON object with the figures.
 */
import { connect as h2connect, constants as h2 } from 'node:http2'
import { connect, type Socket } from 'node:net'
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import type { LifecycleEvent } from '../../sidecar/core/events.js'
import { startCaddy, type RunningCaddy } from '../helpers/caddy.js'
import { freePort } from '../helpers/net.js'
import { startStreamBackend } from '../helpers/stream-backend.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'
import { MemoryProvider } from '../fakes/memory-provider.js'

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    apps: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '24' },
    kinds: { type: 'string' },
  },
})
const MINUTES = Number(values.minutes)
const APPS = Number(values.apps)
const CONCURRENCY = Number(values.concurrency)
const IDLE_MS = 2000
const MARGIN_MS = 5000

type Kind = 'short' | 'sse' | 'ws-fin' | 'ws-rst' | 'ws-close' | 'abort' | '502' | 'h2' | 'h2-reset'
const KINDS: readonly Kind[] = (values.kinds?.split(',') as Kind[] | undefined) ?? ['short', 'short', 'short', 'sse', 'ws-fin', 'ws-rst', 'ws-close', 'abort', '502', 'h2', 'h2-reset']
const done: Record<string, number> = {}
const failed: Record<string, number> = {}
const rand = (lo: number, hi: number) => lo + Math.random() * (hi - lo)
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function main(): Promise<void> {
  const backend = await startStreamBackend()
  const upstream = backend.address
  const ids = Array.from({ length: APPS }, (_, i) => `app${i + 1}`)
  const provider = new MemoryProvider(ids.map((id) => ({ id, hosts: [`${id}.apps.test`], state: 'running' as const, upstreams: [upstream] })))
  let sc: TestSidecar | undefined
  let caddy: RunningCaddy | undefined
  try {
    sc = await startTestSidecar(`min_idle_timeout: 500ms\nresync_interval: 0s\ndefaults: { idle_timeout: ${IDLE_MS}ms }\n`, { providers: [provider] })
    const events: (LifecycleEvent & { at: number })[] = []
    sc.sidecar.registry.events.subscribe((e) => {
      if (e.type === 'sleep.done' || e.type === 'wake.ready') events.push({ ...e, at: Date.now() })
    })
    const tlsPort = await freePort()
    const log = `\tlog {\n\t\toutput net ${sc.caddyAccessLog}\n\t\tformat json\n\t}\n`
    caddy = await startCaddy({
      sidecar: sc.address,
      tls: true,
      global: '\tskip_install_trust\n',
      sites: (port) =>
        `http://*.apps.test:${port} {\n\tbind 127.0.0.1\n${log}\timport relight ${sc?.address}\n}\n` +
        `https://*.apps.test:${tlsPort} {\n\tbind 127.0.0.1\n\ttls internal\n${log}\timport relight ${sc?.address}\n}\n`,
    })
    const port = caddy.port
    const started = Date.now()
    const stopAt = started + MINUTES * 60_000
    const load = { start: loadavg(), end: [] as number[] }
    let peakInflight = 0
    let peakTickets = 0
    let peakRss = 0
    const sampler = setInterval(() => {
      const sum = ids.reduce((n, id) => n + (sc?.sidecar.registry.get(`memory:${id}`)?.inflight ?? 0), 0)
      peakInflight = Math.max(peakInflight, sum)
      peakTickets = Math.max(peakTickets, sc?.sidecar.tickets?.size ?? 0)
      peakRss = Math.max(peakRss, process.memoryUsage().rss)
    }, 250)

    const one = async (kind: Kind, id: string): Promise<void> => {
      const host = `${id}.apps.test:${port}`
      switch (kind) {
        case 'short': {
          const res = await request(`http://127.0.0.1:${port}/`, { headers: { host } })
          await res.body.text()
          return
        }
        case 'sse': {
          const { socket } = await raw(port, host, '/sse')
          await pause(rand(200, 5000))
          socket.destroy()
          return
        }
        case 'ws-fin':
        case 'ws-rst':
        case 'ws-close': {
          const { socket, head } = await raw(port, host, '/ws', { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '13' })
          if (!head.startsWith('HTTP/1.1 101')) throw new Error(`no upgrade: ${head.split('\r\n')[0]}`)
          await pause(rand(100, 3000))
          if (kind === 'ws-fin') socket.end()
          else if (kind === 'ws-rst') socket.resetAndDestroy()
          else socket.write(Buffer.from([0x88, 0x80, 1, 2, 3, 4]))
          await new Promise((r) => (socket.closed ? r(undefined) : socket.once('close', r)))
          return
        }
        case 'abort': {
          const socket = connect(port, '127.0.0.1', () => socket.write(`GET /slow HTTP/1.1\r\nHost: ${host}\r\n\r\n`))
          socket.on('error', () => undefined)
          await pause(rand(50, 1500))
          socket.destroy()
          return
        }
        case '502': {
          const { socket, head } = await raw(port, host, '/reset', { Connection: 'close' })
          socket.destroy()
          if (!head.startsWith('HTTP/1.1 502')) throw new Error(`expected 502: ${head.split('\r\n')[0]}`)
          return
        }
        case 'h2':
        case 'h2-reset': {
          const session = h2connect(`https://127.0.0.1:${tlsPort}`, { rejectUnauthorized: false, servername: `${id}.apps.test` })
          session.on('error', () => undefined)
          try {
            const streams = Array.from({ length: 3 }, (_, i) => {
              const s = session.request({ ':path': kind === 'h2' && i === 0 ? '/' : '/slow', ':authority': `${id}.apps.test:${tlsPort}` })
              s.on('error', () => undefined)
              s.resume()
              return s
            })
            await pause(rand(100, 1500))
            if (kind === 'h2-reset') for (const s of streams) s.close(h2.NGHTTP2_CANCEL)
          } finally {
            session.destroy()
          }
          return
        }
      }
    }

    const worker = async () => {
      while (Date.now() < stopAt) {
        const kind = KINDS[Math.floor(Math.random() * KINDS.length)] as Kind
        const id = ids[Math.floor(Math.random() * ids.length)] as string
        try {
          await one(kind, id)
          done[kind] = (done[kind] ?? 0) + 1
        } catch {
          failed[kind] = (failed[kind] ?? 0) + 1
        }
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    const trafficEnded = Date.now()
    load.end = loadavg()
    clearInterval(sampler)
    const inflight = () => Object.fromEntries(ids.map((id) => [id, sc?.sidecar.registry.get(`memory:${id}`)?.inflight]))
    let zeroAfterMs: number | undefined
    let asleepAfterMs: number | undefined
    let problem: string | undefined
    try {
      await until(() => ids.every((id) => sc?.sidecar.registry.get(`memory:${id}`)?.inflight === 0), 'every in-flight count to reach 0', MARGIN_MS)
      zeroAfterMs = Date.now() - trafficEnded
      await until(
        () => ids.every((id) => sc?.sidecar.registry.get(`memory:${id}`)?.phase === 'asleep'),
        'every app to sleep within idle_timeout + margin',
        IDLE_MS + MARGIN_MS,
        20,
      )
      asleepAfterMs = Date.now() - trafficEnded
    } catch (err) {
      problem = `${(err as Error).message}: in flight ${JSON.stringify(inflight())}`
      if (process.env.SOAK_DUMP) {
        const open = (sc.sidecar.tickets as unknown as { open: Map<string, { key?: string }> }).open
        process.stderr.write(`${[...open.values()].map((e) => e.key).join('\n')}\n`)
      }
    }
    const result = {
      ok: problem === undefined,
      problem,
      minutes: MINUTES,
      apps: APPS,
      concurrency: CONCURRENCY,
      idle_timeout_ms: IDLE_MS,
      completed: done,
      failed,
      total: Object.values(done).reduce((a, b) => a + b, 0),
      sleeps: events.filter((e) => e.type === 'sleep.done').length,
      wakes: events.filter((e) => e.type === 'wake.ready').length,
      peak_inflight_all_apps: peakInflight,
      peak_open_tickets: peakTickets,
      open_tickets_at_end: sc.sidecar.tickets?.size,
      ticket_refusals: sc.sidecar.tickets?.refused,
      inflight_at_end: inflight(),
      inflight_zero_after_ms: zeroAfterMs,
      all_asleep_after_ms: asleepAfterMs,
      access_log: sc.sidecar.accessLog?.stats,
      peak_rss_mb: Math.round(peakRss / 2 ** 20),
      load_average: load,
    }
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
    process.exitCode = result.ok ? 0 : 1
  } finally {
    await caddy?.close()
    await sc?.close()
    await backend.close()
  }
}

function raw(port: number, host: string, path: string, extra: Record<string, string> = {}): Promise<{ socket: Socket; head: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      const headers = Object.entries({ Host: host, ...extra }).map(([k, v]) => `${k}: ${v}\r\n`).join('')
      socket.write(`GET ${path} HTTP/1.1\r\n${headers}\r\n`)
    })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error('no answer within 10 s'))
    }, 10_000)
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    let head = ''
    const onData = (d: Buffer) => {
      head += d.toString('latin1')
      if (head.includes('\r\n\r\n')) {
        clearTimeout(timer)
        socket.off('data', onData)
        socket.on('data', () => undefined)
        resolve({ socket, head })
      }
    }
    socket.on('data', onData)
  })
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
