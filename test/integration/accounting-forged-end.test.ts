/**
 * A local user who can write to the access-log socket, proves the connection with a ticket of
 * their own request and then writes a line WITHOUT a ticket carrying another client's identity
 * (read from /proc/net/tcp) must not end that client's stream. Over TCP (any local user can
 * connect) such lines count for nothing; on a unix socket (only the sidecar's user or
 * socket_group, i.e. Caddy) they do — the control below, which also bounds the negative check.
 */
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { MemoryProvider } from '../fakes/memory-provider.js'
import { freePort } from '../helpers/net.js'
import { okUpstream } from '../helpers/ok-upstream.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const upstream = okUpstream()
const SNIPPET = { 'x-relight-snippet': '3', 'x-forwarded-method': 'GET' }

function line(ticket: string | undefined, port: number, uri: string): string {
  const resp = ticket === undefined ? '{"Server":["Caddy"]}' : `{"X-Relight-Ticket":["${ticket}"]}`
  return `{"level":"info","logger":"http.log.access","msg":"handled request","request":{"remote_ip":"127.0.0.1","remote_port":"${port}","proto":"HTTP/1.1","method":"GET","host":"a.example.com","uri":"${uri}","headers":{}},"status":0,"resp_headers":${resp}}\n`
}

async function attack(sc: TestSidecar, log: string): Promise<{ inflight: () => number; socket: Socket }> {
  const auth = async (port: number, uri: string) => {
    const res = await request(`${sc.url}/_relight/auth`, { headers: { host: 'a.example.com', ...SNIPPET, 'x-relight-client': `127.0.0.1:${port}`, 'x-relight-request': `GET ${uri}`, 'x-forwarded-uri': uri } })
    await res.body.dump()
    assert.equal(res.statusCode, 200)
    return String(res.headers['x-relight-ticket'])
  }
  const inflight = () => sc.sidecar.registry.get('memory:a')?.inflight ?? -1
  const socket = log.startsWith('unix:') ? connect(log.slice('unix:'.length)) : connect(Number(log.split(':')[1]), '127.0.0.1')
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  await until(() => sc.sidecar.registry.get('memory:a') !== undefined, 'the backend to be listed')
  await auth(50001, '/sse') // the victim's stream
  const own = await auth(50002, '/mine') // the attacker's own request, and its ticket
  assert.equal(inflight(), 2)
  socket.write(line(own, 50002, '/mine')) // proves the connection
  await until(() => inflight() === 1, "the attacker's own line to be read")
  socket.write(line(undefined, 50001, '/sse')) // the victim's identity, no ticket
  return { inflight, socket }
}

describe('a forged line without a ticket', () => {
  const started: TestSidecar[] = []
  const sockets: Socket[] = []
  after(async () => {
    for (const s of sockets) s.destroy()
    await Promise.all(started.map((s) => s.close()))
  })

  it('ends nothing when the access log is on TCP; on a unix socket (Caddy only) it ends the request', async () => {
    const provider = () => new MemoryProvider([{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [upstream.address] }])
    const tcpLog = `127.0.0.1:${await freePort()}`
    const tcp = await startTestSidecar(`access_log: ${tcpLog}\nresync_interval: 0s\n`, { providers: [provider()], accessLog: false })
    started.push(tcp)
    const onTcp = await attack(tcp, tcpLog)
    sockets.push(onTcp.socket)
    const unix = await startTestSidecar('resync_interval: 0s\n', { providers: [provider()] })
    started.push(unix)
    const onUnix = await attack(unix, `unix:${unix.caddyAccessLog.slice('unix/'.length)}`)
    sockets.push(onUnix.socket)
    // the unix control's delayed match fires after the TCP one would have (it was written later)
    await until(() => onUnix.inflight() === 0, 'the unix control: a line without a ticket from the trusted socket ends the request', 30_000)
    assert.equal(onTcp.inflight(), 1, "a line without a ticket on the TCP access log ended another client's stream")
  })
})
