/**
 * Event-stream clients that never read cost bounded memory (issue 23 item 8): 100 of them (the
 * stream cap) on real sockets, then 20,000 events of ~300 bytes each. The old stream queued up to
 * 1 MiB per client before cutting it (the issue measured RSS 100 → 395 MB); now nothing is
 * queued after the socket pushes back, and a client that reads again resumes from the event
 * buffer, with `event: reset` first because it missed some.
 */
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { describe, it } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import { Registry } from '../../sidecar/core/registry.js'
import { buildApp } from '../../sidecar/server/app.js'
import { MemoryProvider } from '../fakes/memory-provider.js'
import { testSecret } from '../helpers/secret.js'
import { until } from '../helpers/wait.js'

const mb = (bytes: number) => Math.round(bytes / 1048576)
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
/** Memory the process holds after a full collection: heap in use plus buffers outside it. */
function retained(): number {
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.external
}

describe('event-stream clients that never read', () => {
  it('100 stalled clients and 20k events: memory grows by a few MB, not by a backlog per client', async (t) => {
    const log = pino({ level: 'silent' })
    const token = testSecret()
    const registry = new Registry([new MemoryProvider([])], parseConfig('resync_interval: 0s\n', 'test'), log)
    const app = buildApp({ adminToken: token }, { registry, logger: log })
    const sockets: Socket[] = []
    t.after(async () => {
      for (const s of sockets) s.destroy()
      registry.close()
      await app.close()
    })
    await registry.start()
    await app.listen({ host: '127.0.0.1', port: 0 })
    const port = (app.server.address() as { port: number }).port

    const opened: boolean[] = []
    for (let i = 0; i < 100; i++) {
      const socket = connect(port, '127.0.0.1')
      sockets.push(socket)
      let head = ''
      const onData = (d: Buffer) => {
        head += d.toString()
        if (!head.includes('retry: 2000')) return
        opened[i] = head.startsWith('HTTP/1.1 200')
        socket.off('data', onData)
        socket.pause() // never read again
      }
      socket.on('data', onData)
      socket.write(`GET /_relight/admin/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\n\r\n`)
    }
    await until(() => opened.filter(Boolean).length === 100, 'all 100 streams to open', 20_000)

    const rssBefore = process.memoryUsage().rss
    const before = retained()
    let peak = before
    let rssPeak = rssBefore
    const padding = 'x'.repeat(200)
    for (let i = 0; i < 20_000; i++) {
      registry.events.emit({ type: 'wake.failed', key: 'memory:a', name: 'a', provider: 'memory', duration_ms: i, code: 'RELIGHT_ERR_WAKE_TIMEOUT', reason: padding })
      if (i % 2000 === 1999) {
        await new Promise((r) => setImmediate(r)) // let the sockets flush what they can
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss)
        peak = Math.max(peak, retained())
      }
    }
    const growth = peak - before
    process.stderr.write(`# 100 stalled clients, 20k events: RSS ${mb(rssBefore)} → peak ${mb(rssPeak)} MB; retained heap+external ${mb(before)} → peak ${mb(peak)} MB (+${mb(growth)} MB)\n`)
    // The event buffer itself (1000 events) and 100 sockets' own buffers: a few MB. The old
    // stream held up to 1 MiB per client: +100 MB or more.
    assert.ok(growth < 20 * 1048576, `retained memory grew by ${mb(growth)} MB for 100 stalled clients`)
    assert.ok(sockets.every((s) => !s.destroyed), 'stalled clients stay connected (they are not cut)')

    // One client reads again: it catches up from the buffer, told that it missed events.
    const reader = sockets[0] as Socket
    let text = ''
    reader.on('data', (d: Buffer) => (text += d.toString()))
    reader.resume()
    const last = 20_000
    await until(() => text.includes('event: reset') && new RegExp(`"duration_ms":${last - 1}[,}]`).test(text), 'the reader to catch up to the last event', 30_000)
  })
})
