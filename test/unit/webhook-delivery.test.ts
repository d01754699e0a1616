/**
 * Webhook deliveries a receiver can trust (issue 23 item 5): ids never repeat across restarts
 * (each Webhooks instance is one run of the sidecar, its event ids start at 1 again), the
 * signature covers a timestamp, and the README's verification recipe — run here as written —
 * accepts a real delivery and refuses the same delivery replayed after its age limit.
 */
import assert from 'node:assert/strict'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import { LifecycleEvents } from '../../sidecar/core/events.js'
import { Webhooks } from '../../sidecar/ops/webhooks.js'
import { tempDir } from '../helpers/net.js'
import { testSecret } from '../helpers/secret.js'
import { until } from '../helpers/wait.js'

const README = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8')
type Verify = (secret: string, header: string, body: string, maxAgeSeconds?: number) => boolean

describe('webhook deliveries', () => {
  const tmp = tempDir('relight-hook-')
  const received: { headers: IncomingHttpHeaders; body: string }[] = []
  const receiver = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      received.push({ headers: req.headers, body })
      res.writeHead(204).end()
    })
  })
  after(async () => {
    await new Promise<void>((r) => receiver.close(() => r()))
    tmp.remove()
  })
  const secret = testSecret()

  async function run(events: number): Promise<void> {
    const port = (receiver.address() as { port: number }).port
    const config = parseConfig(`webhooks:\n  - { url: "http://127.0.0.1:${port}/hook", events: ["*"], secret: ${secret} }\n`, 'test')
    const bus = new LifecycleEvents()
    const hooks = new Webhooks(config.webhooks, bus, pino({ level: 'silent' }))
    for (let i = 0; i < events; i++) bus.emit({ type: 'provider.up', provider: 'memory', backends: i })
    await until(() => hooks.stats()[0]?.delivered === events, `${events} deliveries`)
    hooks.close()
  }

  it('delivery ids are unique across restarts of the sidecar', async () => {
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
    await run(5)
    await run(5) // a restart: event ids start again at 1
    await run(5)
    const ids = received.map((r) => String(r.headers['x-relight-delivery']))
    assert.equal(ids.length, 15)
    assert.equal(new Set(ids).size, 15, `repeated delivery ids: ${ids.join(' ')}`)
  })

  it("the README's verification recipe accepts a fresh delivery and refuses it replayed later or altered", async () => {
    const block = /```js\n(\/\/ verify-relight\.mjs\n[\s\S]*?)```/.exec(README)?.[1]
    assert.ok(block, 'the README has the verify-relight.mjs recipe')
    const file = join(tmp.dir, 'verify-relight.mjs')
    writeFileSync(file, block)
    const { verifyRelight } = (await import(pathToFileURL(file).href)) as { verifyRelight: Verify }
    const got = received[0]
    assert.ok(got)
    const header = String(got.headers['x-relight-signature'])
    assert.match(header, /^t=\d+,v1=[0-9a-f]{64}$/)
    assert.equal(verifyRelight(secret, header, got.body), true, 'a fresh delivery verifies')
    assert.equal(verifyRelight(testSecret(), header, got.body), false, 'another secret does not')
    assert.equal(verifyRelight(secret, header, got.body.replace('"backends":0', '"backends":1')), false, 'an altered body does not')
    // The same captured delivery, replayed: its signed timestamp is now older than the limit.
    const t = Number(/^t=(\d+)/.exec(header)?.[1])
    await until(() => Date.now() / 1000 - t > 1, 'one second to pass', 5000, 50)
    assert.equal(verifyRelight(secret, header, got.body, 1), false, 'a replay older than maxAgeSeconds is refused')
    const forged = header.replace(/^t=\d+/, `t=${Math.floor(Date.now() / 1000)}`)
    assert.equal(verifyRelight(secret, forged, got.body, 1), false, 'a fresh timestamp on an old signature does not verify')
  })
})
