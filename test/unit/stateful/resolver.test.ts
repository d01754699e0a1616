/** SystemResolver against a real (tiny, local) DNS server: TTLs, repointing, no silent fallback. */
import assert from 'node:assert/strict'
import type { Socket } from 'node:dgram'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import pino from 'pino'
import { NameCache, SystemResolver } from '../../../sidecar/routing/stateful/resolver.js'
import { tempDir } from '../../helpers/net.js'

const DNS_SERVER = new URL('../../../../examples/doors-rollout/dns.mjs', import.meta.url).href

let socket: Socket
let server: string
const tmp = tempDir('relight-dns-')
const records = join(tmp.dir, 'records.json')

before(async () => {
  writeFileSync(records, JSON.stringify({ 'app.doors.test': '127.0.0.2' }))
  const { serveDns } = (await import(DNS_SERVER)) as { serveDns: (file: string, host: string, port: number) => Promise<Socket> }
  socket = await serveDns(records, '127.0.0.1', 0)
  server = `127.0.0.1:${socket.address().port}`
})
after(() => {
  socket?.close()
  tmp.remove()
})

test('A records with their TTL from the configured server; unknown names fail without fallback', async () => {
  const resolver = new SystemResolver([server])
  assert.deepEqual(await resolver.resolve('app.doors.test'), [{ address: '127.0.0.2', ttl: 1 }])
  await assert.rejects(resolver.resolve('missing.doors.test'))
})

test('IP literals and localhost never reach DNS', async () => {
  const resolver = new SystemResolver(['127.0.0.1:9']) // discard port: a query would time out
  assert.deepEqual(await resolver.resolve('127.0.0.3'), [{ address: '127.0.0.3', ttl: Infinity }])
  assert.deepEqual(await resolver.resolve('fd00::5'), [{ address: 'fd00::5', ttl: Infinity }])
  const local = await resolver.resolve('localhost')
  assert.ok(local.length > 0 && local.every((a) => a.address === '127.0.0.1' || a.address === '::1'), JSON.stringify(local))
})

test('NameCache follows a repointed name through real DNS', async () => {
  const cache = new NameCache(new SystemResolver([server]), pino({ level: 'silent' }))
  after(() => cache.close())
  cache.watch('app.doors.test', 10_000) // the record's own TTL (1 s) is below the cap
  await cache.ready('app.doors.test')
  assert.equal(cache.pick('app.doors.test'), '127.0.0.2')
  const changed = once(cache, 'change')
  writeFileSync(records, JSON.stringify({ 'app.doors.test': '127.0.0.3' }))
  const [, addresses] = (await changed) as [string, string[]]
  assert.deepEqual(addresses, ['127.0.0.3'])
  assert.equal(cache.pick('app.doors.test'), '127.0.0.3')
})
