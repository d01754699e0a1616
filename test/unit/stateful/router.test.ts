import assert from 'node:assert/strict'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import pino from 'pino'
import { ConfigError, parseConfig } from '../../../sidecar/config/load.js'
import { createBalancer } from '../../../sidecar/routing/stateful/balancer.js'
import { NameCache } from '../../../sidecar/routing/stateful/resolver.js'
import { TokenCipher } from '../../../sidecar/routing/stateful/token.js'
import { FakeResolver } from '../../helpers/fake-resolver.js'
import { startTestSidecar, type TestSidecar } from '../../helpers/sidecar.js'

const SECRET = Buffer.alloc(32, 9).toString('base64')
const cipher = new TokenCipher(SECRET)
const silent = pino({ level: 'silent' })

function problems(yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(yaml, 'test', env)
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems]
    throw err
  }
  return []
}

describe('stateful config', () => {
  const site = (extra: string, upstreams = '[{ cidr: 127.0.0.0/24, host: app.svc.test, port: 8080 }]') =>
    `stateful:\n  - hosts: [app.example.com]\n    secret: "${SECRET}"\n    upstreams: ${upstreams}\n${extra}`

  test('a valid entry parses, with defaults and the secret from the environment', () => {
    const config = parseConfig('stateful:\n  - hosts: [App.Example.COM]\n    secret: "${DOORS_SECRET}"\n    upstreams: [{ cidr: 127.0.0.0/24, host: App.Svc.Test, port: 8080 }]\n', 'test', { DOORS_SECRET: SECRET })
    const entry = config.stateful[0]
    assert.ok(entry)
    assert.deepEqual(entry.hosts, ['app.example.com'])
    assert.equal(entry.secret, SECRET)
    assert.equal(entry.lb_policy, 'random')
    assert.equal(entry.dns_max_ttl, 10_000)
    assert.deepEqual(entry.upstreams, [{ cidr: '127.0.0.0/24', host: 'app.svc.test', port: 8080 }])
    assert.deepEqual(parseConfig('{}').stateful, [])
  })

  test('the example config and the README sample parse', () => {
    const root = new URL('../../../../', import.meta.url)
    const env = { DOORS_SECRET: SECRET }
    const example = parseConfig(readFileSync(new URL('examples/doors-rollout/relight.yaml', root), 'utf8'), 'examples/doors-rollout/relight.yaml', env)
    assert.equal(example.stateful.length, 1)
    const readme = readFileSync(new URL('examples/doors-rollout/README.md', root), 'utf8')
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string)
    assert.ok(blocks.length >= 1)
    for (const block of blocks) assert.ok(parseConfig(block, 'examples/doors-rollout/README.md', env).stateful.length > 0)
  })

  test('errors name the key', () => {
    const p = (yaml: string) => problems(yaml).join('\n')
    assert.match(p(site('').replace(SECRET, 'c2hvcnQ=')), /stateful\[0\]\.secret: decodes to 5 bytes/)
    assert.match(p(site('').replace(SECRET, 'not base64')), /stateful\[0\]\.secret: not standard base64/)
    assert.match(p(site('', '[{ cidr: 127.0.0.0/33, host: a.test, port: 80 }]')), /stateful\[0\]\.upstreams\[0\]\.cidr: not a CIDR/)
    assert.match(p(site('', '[{ cidr: 127.0.0.0/24, host: "a.test:80", port: 80 }]')), /stateful\[0\]\.upstreams\[0\]\.host:/)
    assert.match(p(site('', '[{ cidr: 127.0.0.0/24, host: a.test }]')), /stateful\[0\]\.upstreams\[0\]\.port:/)
    assert.match(p(site('', '[{ pod_cidr: 127.0.0.0/24, cidr: 127.0.0.0/24, host: a.test, port: 1 }]')), /stateful\[0\]\.upstreams\[0\]\.pod_cidr: unknown key/)
    assert.match(p(site('    cookie: upstream\n')), /stateful\[0\]\.cookie: unknown key/)
    assert.match(p(site('    lb_policy: least_conn\n')), /stateful\[0\]\.lb_policy:/)
    assert.match(
      p(site('', '[{ cidr: 127.0.0.2/32, host: a.test, port: 1 }, { cidr: 127.0.0.3/32, host: b.test, port: 1 }]')),
      /stateful\[0\]\.cookie_name: required when there is more than one upstream/,
    )
    assert.match(p(`${site('')}  - hosts: [app.example.com]\n    secret: "${SECRET}"\n    upstreams: [{ cidr: 127.0.0.0/24, host: a.test, port: 1 }]\n`), /stateful\[1\]\.hosts\[0\]: "app.example.com" is already listed in stateful\[0\]/)
    assert.match(p(site('').replace('[app.example.com]', '["*.example.com"]')), /stateful\[0\]\.hosts\[0\]: .*wildcards/)
    assert.match(p(site('').replace('[app.example.com]', '[]')), /stateful\[0\]\.hosts: list at least one host/)
    assert.match(problems('stateful:\n  - hosts: [a.test]\n    secret: "${DOORS_SECRET}"\n    upstreams: []\n').join('\n'), /environment variable DOORS_SECRET is not set/)
    assert.match(problems('dns: { servers: [not-an-ip] }\n').join('\n'), /dns\.servers\[0\]: expected an IP address/)
    assert.match(problems('dns: { server: 127.0.0.1 }\n').join('\n'), /dns\.server: unknown key/)
    assert.deepEqual(parseConfig('dns: { servers: ["127.0.0.1:5353", "[::1]:53"] }\n').dns.servers, ['127.0.0.1:5353', '[::1]:53'])
    // The secret itself never appears in a message.
    assert.doesNotMatch(p(site('    cookie_name: "a b"\n')), new RegExp(SECRET.replace(/[+/=]/g, '.')))
  })
})

describe('balancer', () => {
  test('round_robin cycles, random stays in range', () => {
    const rr = createBalancer('round_robin', 3)
    assert.deepEqual([rr.pick(), rr.pick(), rr.pick(), rr.pick()], [0, 1, 2, 0])
    const r = createBalancer('random', 3)
    for (let i = 0; i < 50; i++) assert.ok([0, 1, 2].includes(r.pick()))
  })

  test('least_requests picks the upstream sent the fewest recent requests', () => {
    let now = 0
    const b = createBalancer('least_requests', 3, () => now)
    for (let i = 0; i < 5; i++) b.record(0)
    b.record(1)
    assert.equal(b.pick(), 2)
    b.record(2)
    b.record(2)
    assert.equal(b.pick(), 1)
    now = 25_000 // both buckets expired: all equal again, ties rotate
    const picks = new Set([b.pick(), b.pick(), b.pick()])
    assert.equal(picks.size, 3)
  })
})

describe('NameCache', () => {
  test('follows a DNS change after the TTL, keeps the last answer when DNS fails', async () => {
    const dns = new FakeResolver()
    dns.set('svc.test', ['127.0.0.2'], 3600) // long TTL: the cap decides
    const cache = new NameCache(dns, silent)
    after(() => cache.close())
    cache.watch('svc.test', 1000)
    await cache.ready('svc.test')
    assert.equal(cache.pick('svc.test'), '127.0.0.2')
    dns.set('svc.test', ['127.0.0.3', '::1'])
    const [name, addresses] = (await once(cache, 'change')) as [string, string[]]
    assert.equal(name, 'svc.test')
    assert.deepEqual(addresses, ['127.0.0.3', '[::1]'])
    const seen = new Set([cache.pick('svc.test'), cache.pick('svc.test')])
    assert.deepEqual([...seen].sort(), ['127.0.0.3', '[::1]'])
    dns.fail('svc.test')
    await dns.nextCall('svc.test')
    assert.ok(['127.0.0.3', '[::1]'].includes(cache.pick('svc.test') as string))
  })

  test('a name that never resolves has no address', async () => {
    const cache = new NameCache(new FakeResolver(), silent)
    after(() => cache.close())
    cache.watch('nowhere.test', 1000)
    await cache.ready('nowhere.test')
    assert.equal(cache.pick('nowhere.test'), undefined)
  })
})

describe('/_relight/auth for stateful hosts (inject)', () => {
  let sc: TestSidecar
  const dns = new FakeResolver()
  dns.set('fresh.svc.test', ['127.0.0.3'])
  dns.set('s1.svc.test', ['127.0.0.3'])
  dns.set('s2.svc.test', ['127.0.0.4'])
  dns.set('v6.svc.test', ['::1'])

  before(async () => {
    sc = await startTestSidecar(
      `stateful:
  - hosts: [one.example.com]
    secret: "${SECRET}"
    upstreams: [{ cidr: 127.0.0.0/24, host: fresh.svc.test, port: 8080 }, ]
  - hosts: [two.example.com, two-alias.example.com]
    secret: "${SECRET}"
    cookie_name: upstream
    lb_policy: round_robin
    upstreams:
      - { cidr: 127.0.0.2/31, host: s1.svc.test, port: 8081 }
      - { cidr: 127.0.0.4/32, host: s2.svc.test, port: 8082 }
      - { cidr: "fd00::/64", host: v6.svc.test, port: 8083 }
  - hosts: [broken.example.com]
    secret: "${SECRET}"
    upstreams: [{ cidr: 127.0.0.0/24, host: nowhere.svc.test, port: 8080 }]
`,
      { accessLog: false, resolver: dns },
    )
  })
  after(() => sc.close())

  const auth = (host: string, uri: string, cookie?: string) =>
    sc.sidecar.app.inject({ method: 'GET', url: '/_relight/auth', headers: { host, 'x-forwarded-uri': uri, ...(cookie ? { cookie } : {}) } })
  const upstreamOf = async (host: string, uri: string, cookie?: string) => {
    const res = await auth(host, uri, cookie)
    assert.equal(res.statusCode, 200, res.body)
    return res.headers['x-relight-upstream']
  }

  test('system path: the pod IP in the token, on the matching upstream port', async () => {
    assert.equal(await upstreamOf('one.example.com', `/~/${cipher.encode('127.0.0.2')}/x?y=1`), '127.0.0.2:8080')
    assert.equal(await upstreamOf('one.example.com:443', `/~/${cipher.encode('127.0.0.9')}`), '127.0.0.9:8080')
    assert.equal(await upstreamOf('two.example.com', `/~/${cipher.encode('127.0.0.3')}/`), '127.0.0.3:8081')
    assert.equal(await upstreamOf('two.example.com', `/~/${cipher.encode('127.0.0.4')}/`), '127.0.0.4:8082')
    assert.equal(await upstreamOf('TWO-ALIAS.example.com', `/~/${cipher.encode('fd00::5')}/`), '[fd00::5]:8083')
  })

  test('system path with a bad or unmatched token: 410 with an empty body', async () => {
    const bad = [
      ['one.example.com', '/~/not-a-token/x'],
      ['one.example.com', `/~/${new TokenCipher(Buffer.alloc(32, 1).toString('base64')).encode('127.0.0.2')}/x`],
      ['one.example.com', `/~/${cipher.encode('127.0.1.2')}/x`], // outside 127.0.0.0/24
      ['one.example.com', `/~/${cipher.encode('::1')}/x`], // other family
      ['two.example.com', `/~/${cipher.encode('127.0.0.5')}`],
    ] as const
    for (const [host, uri] of bad) {
      const res = await auth(host, uri)
      assert.equal(res.statusCode, 410, uri)
      assert.equal(res.body, '')
      assert.equal(res.headers['x-relight-upstream'], undefined)
    }
  })

  test('malformed system paths route as ordinary requests', async () => {
    for (const uri of ['/~//x', '/~/', '/~', '/x/~/abc']) assert.equal(await upstreamOf('one.example.com', uri), '127.0.0.3:8080', uri)
  })

  test('one upstream: every ordinary request goes to its host, cookie or not', async () => {
    assert.equal(await upstreamOf('one.example.com', '/'), '127.0.0.3:8080')
    assert.equal(await upstreamOf('one.example.com', '/page', `upstream=${cipher.encode('127.0.0.2')}`), '127.0.0.3:8080')
  })

  test('several upstreams: the cookie picks the server, then its host', async () => {
    const c = (ip: string) => `a=1; upstream=${cipher.encode(ip)}`
    for (let i = 0; i < 3; i++) {
      assert.equal(await upstreamOf('two.example.com', '/', c('127.0.0.2')), '127.0.0.3:8081') // server 1 → its fresh pod
      assert.equal(await upstreamOf('two.example.com', '/', c('127.0.0.4')), '127.0.0.4:8082')
      assert.equal(await upstreamOf('two.example.com', '/', c('fd00::9')), '[::1]:8083')
    }
  })

  test('several upstreams, no or bad cookie: new sessions spread by lb_policy', async () => {
    const seen = new Set<unknown>()
    for (const cookie of [undefined, 'upstream=garbage', `upstream=${cipher.encode('127.0.0.9')}`, 'other=1', undefined, undefined]) {
      seen.add(await upstreamOf('two.example.com', '/', cookie))
    }
    assert.deepEqual([...seen].sort(), ['127.0.0.3:8081', '127.0.0.4:8082', '[::1]:8083'])
  })

  test('a host that never resolved: 502 with a typed error', async () => {
    const res = await auth('broken.example.com', '/')
    assert.equal(res.statusCode, 502)
    assert.equal(res.json().code, 'RELIGHT_ERR_STATEFUL_UNRESOLVED')
    // the token path needs no DNS
    assert.equal(await upstreamOf('broken.example.com', `/~/${cipher.encode('127.0.0.2')}/`), '127.0.0.2:8080')
  })

  test('other hosts are untouched; ask allows stateful hosts', async () => {
    const res = await auth('unknown.example.com', '/')
    assert.equal(res.statusCode, 404)
    const ask = await sc.sidecar.app.inject({ method: 'GET', url: '/_relight/ask?domain=two-alias.example.com' })
    assert.equal(ask.statusCode, 200)
    assert.deepEqual(ask.json(), { allowed: true, domain: 'two-alias.example.com' }, 'no backend, no kind: any local caller may ask')
  })
})
