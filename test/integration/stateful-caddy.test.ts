/**
 * End to end through real Caddy (2.6.2) with the stock relight snippet: three loopback "pods"
 * (127.0.0.2 A, 127.0.0.3 B, 127.0.0.4 C) and an injected resolver. A rollout repoints the
 * deployment's DNS name from A to B; sessions that own state on A keep reaching A through
 * their `/~/{token}/…` system requests, and new sessions land on B.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, describe, test } from 'node:test'
import { TokenCipher } from '../../sidecar/routing/stateful/token.js'
import { caddySkip, startCaddy, type RunningCaddy } from '../helpers/caddy.js'
import { FakeResolver } from '../helpers/fake-resolver.js'
import { get, podOf, startPods, type Pod } from '../helpers/loopback-pods.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'

const SECRET = Buffer.alloc(32, 42).toString('base64')
const skip = caddySkip() ?? false

describe('stateful rollout through real Caddy', { skip }, () => {
  const dns = new FakeResolver()
  let pods: { pods: Pod[]; port: number; close(): Promise<void> }
  let A: Pod, B: Pod, C: Pod
  let sc: TestSidecar
  let caddy: RunningCaddy

  before(async () => {
    pods = await startPods([['A', '127.0.0.2'], ['B', '127.0.0.3'], ['C', '127.0.0.4']], SECRET)
    ;[A, B, C] = pods.pods as [Pod, Pod, Pod]
    dns.set('app.svc.test', ['127.0.0.2']) // single-server app: fresh deployment is A
    dns.set('s1.svc.test', ['127.0.0.2']) // two-server app: server 1 = A (and later B)
    dns.set('s2.svc.test', ['127.0.0.4']) // server 2 = C
    sc = await startTestSidecar(
      `stateful:
  - hosts: [doors.localhost]
    secret: "${SECRET}"
    upstreams: [{ cidr: 127.0.0.0/24, host: app.svc.test, port: ${pods.port} }]
  - hosts: [multi.localhost]
    secret: "${SECRET}"
    cookie_name: upstream
    lb_policy: round_robin
    upstreams:
      - { cidr: 127.0.0.2/31, host: s1.svc.test, port: ${pods.port} }
      - { cidr: 127.0.0.4/32, host: s2.svc.test, port: ${pods.port} }
`,
      { resolver: dns },
    )
    caddy = await startCaddy({
      sidecar: sc.address,
      sites: (port) => `http://:${port} {\n\tbind 127.0.0.1\n\tlog {\n\t\toutput net ${sc.caddyAccessLog}\n\t\tformat json\n\t}\n\timport relight ${sc.address}\n}\n`,
    })
  })

  after(async () => {
    await caddy?.close()
    await sc?.close()
    await pods?.close()
  })

  const via = (host: string, path: string, cookie?: string) => get(caddy.url, path, { host, ...(cookie ? { cookie } : {}) })
  const pod = async (host: string, path: string, cookie?: string) => podOf(await via(host, path, cookie))

  /** Repoint `name` and wait until the sidecar has picked it up (its background refresh). */
  async function rollout(name: string, ip: string): Promise<void> {
    const names = sc.sidecar.stateful?.names
    assert.ok(names)
    const changed = once(names, 'change')
    dns.set(name, [ip])
    const [which] = (await changed) as [string]
    assert.equal(which, name)
  }

  test('single upstream: rollout moves new sessions to B, A keeps its system requests', async () => {
    // Before: a new session lands on A, which hands out its cookie and token.
    const first = await via('doors.localhost', '/')
    assert.equal(podOf(first), 'A')
    assert.match(String(first.headers['set-cookie']), new RegExp(`upstream=${A.token}`))
    assert.equal(await pod('doors.localhost', `/~/${A.token}/events`), 'A')

    await rollout('app.svc.test', B.ip)

    // A's session: system requests still reach A, by the IP in the token (A is draining).
    for (let i = 0; i < 3; i++) {
      const r = await via('doors.localhost', `/~/${A.token}/call?n=${i}`, `upstream=${A.token}`)
      assert.equal(podOf(r), 'A')
      assert.match(r.body, new RegExp(`path=/~/${A.token}/call\\?n=${i}`))
    }
    // New sessions and page loads go to the fresh deployment, B — also with A's cookie: with one
    // upstream doors-caddy ignores the cookie, and a page load is how a draining session moves on.
    assert.equal(await pod('doors.localhost', '/'), 'B')
    assert.equal(await pod('doors.localhost', '/page', `upstream=${A.token}`), 'B')
    assert.equal(await pod('doors.localhost', `/~/${B.token}/call`), 'B')
    // Token paths work for any pod in the CIDR, even one DNS never pointed at.
    assert.equal(await pod('doors.localhost', `/~/${C.token}/call`), 'C')
    // Malformed system path: an ordinary request.
    assert.equal(await pod('doors.localhost', '/~//x'), 'B')
  })

  test('undecryptable or unmatched token: 410 Gone with an empty body, through Caddy', async () => {
    const other = new TokenCipher(Buffer.alloc(32, 1).toString('base64')).encode('127.0.0.2')
    const outside = new TokenCipher(SECRET).encode('127.0.1.2')
    for (const path of ['/~/garbage/x', `/~/${other}/x`, `/~/${outside}/x`, `/~/${A.token.slice(0, -2)}xx/x`]) {
      const r = await via('doors.localhost', path)
      assert.equal(r.status, 410, path)
      assert.equal(r.body, '', path)
    }
    // and a 410 on the two-server site too (127.0.0.5 is in neither CIDR)
    const r = await via('multi.localhost', `/~/${new TokenCipher(SECRET).encode('127.0.0.5')}/x`)
    assert.equal(r.status, 410)
    assert.equal(r.body, '')
  })

  test('several upstreams: the cookie keeps a session on its server across a rollout', async () => {
    // New sessions alternate between the servers (round_robin).
    const fresh = new Set([await pod('multi.localhost', '/'), await pod('multi.localhost', '/')])
    assert.deepEqual([...fresh].sort(), ['A', 'C'])
    for (let i = 0; i < 3; i++) {
      assert.equal(await pod('multi.localhost', '/', `upstream=${A.token}`), 'A')
      assert.equal(await pod('multi.localhost', '/', `upstream=${C.token}`), 'C')
    }

    await rollout('s1.svc.test', B.ip)

    for (let i = 0; i < 3; i++) {
      // A's system requests still reach A; its page loads reach server 1's fresh pod, B — never C.
      assert.equal(await pod('multi.localhost', `/~/${A.token}/call`, `upstream=${A.token}`), 'A')
      assert.equal(await pod('multi.localhost', '/page', `upstream=${A.token}`), 'B')
      // C's session stays on server 2.
      assert.equal(await pod('multi.localhost', '/page', `upstream=${C.token}`), 'C')
      assert.equal(await pod('multi.localhost', `/~/${C.token}/call`, `upstream=${C.token}`), 'C')
    }
    // New sessions (no cookie, or a cookie that does not decrypt): B and C, never A.
    const after = new Set<string>()
    for (const cookie of [undefined, undefined, 'upstream=garbage', 'upstream=garbage']) after.add(await pod('multi.localhost', '/', cookie))
    assert.deepEqual([...after].sort(), ['B', 'C'])
  })

  test('other hosts are not stateful: unknown host is 404', async () => {
    const r = await via('nobody.localhost', '/')
    assert.equal(r.status, 404)
  })
})
