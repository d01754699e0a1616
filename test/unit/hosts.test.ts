import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HostIndex } from '../../sidecar/core/host-index.js'
import { normalizeHost, parseHostPattern, plainHttpToRemote } from '../../sidecar/core/hosts.js'

describe('normalizeHost', () => {
  it('lower-cases, strips the port and a trailing dot', () => {
    assert.equal(normalizeHost('App.Example.COM'), 'app.example.com')
    assert.equal(normalizeHost('app.example.com:8443'), 'app.example.com')
    assert.equal(normalizeHost('app.example.com.'), 'app.example.com')
    assert.equal(normalizeHost('app.example.com.:443'), 'app.example.com')
    assert.equal(normalizeHost('localhost'), 'localhost')
  })
  it('converts internationalised names to ASCII (IDNA)', () => {
    assert.equal(normalizeHost('bücher.example'), 'xn--bcher-kva.example')
    assert.equal(normalizeHost('BÜCHER.example:80'), 'xn--bcher-kva.example')
    assert.equal(normalizeHost('пример.испытание'), 'xn--e1afmkfd.xn--80akhbyknj4f')
  })
  it('rejects what is not a DNS name', () => {
    for (const bad of [
      undefined,
      '',
      '.',
      ':80',
      'a..b',
      '-a.example',
      'a-.example',
      'under_score.example',
      'sp ace.example',
      'a.example:http',
      'a.example:123456',
      '[::1]',
      '[::1]:443',
      'evil.example/path',
      'a.example\r\nx: y',
      `${'a'.repeat(64)}.example`,
      `${'a.'.repeat(127)}com`,
      'x'.repeat(2000),
    ]) {
      assert.equal(normalizeHost(bad), undefined, String(bad).slice(0, 40))
    }
    assert.equal(normalizeHost(`${'a'.repeat(63)}.example`), `${'a'.repeat(63)}.example`)
  })
})

describe('parseHostPattern', () => {
  it('tells exact names, wildcards and first-label names apart', () => {
    assert.deepEqual(parseHostPattern('Shop.Example.com'), { kind: 'exact', name: 'shop.example.com' })
    assert.deepEqual(parseHostPattern('*.apps.example.com'), { kind: 'wildcard', suffix: 'apps.example.com' })
    assert.deepEqual(parseHostPattern('myapp'), { kind: 'label', label: 'myapp' })
    assert.equal(parseHostPattern('*.'), undefined)
    assert.equal(parseHostPattern('a.*.example.com'), undefined)
  })
})

describe('HostIndex', () => {
  const index = new HostIndex(
    [
      { key: 'p:exact', target: 'exact', hosts: ['app.apps.example.com'] },
      { key: 'p:wild', target: 'wild', hosts: ['*.example.net'] },
      { key: 'p:wild2', target: 'wild2', hosts: ['*.deep.example.net'] },
      { key: 'p:label', target: 'label', hosts: ['app', 'shop'] },
      { key: 'p:zdupe', target: 'dupe', hosts: ['app.apps.example.com', 'bad host'] },
    ],
    ['apps.example.com'],
  )
  it('resolves with precedence exact > most specific wildcard > first label under a base domain', () => {
    assert.equal(index.resolve('app.apps.example.com'), 'exact')
    assert.equal(index.resolve('shop.apps.example.com'), 'label')
    assert.equal(index.resolve('x.example.net'), 'wild')
    assert.equal(index.resolve('x.deep.example.net'), 'wild2')
    assert.equal(index.resolve('example.net'), undefined, 'a wildcard does not match its own apex')
    assert.equal(index.resolve('shop.evil.example'), undefined)
    assert.equal(index.resolve('shop'), undefined)
  })
  it('reports duplicate and invalid declarations instead of silently overriding', () => {
    assert.deepEqual(
      index.problems.map((p) => [p.key, p.host]),
      [
        ['p:zdupe', 'app.apps.example.com'],
        ['p:zdupe', 'bad host'],
      ],
    )
  })
  it('gives a host two entries declare to the lower rank (config apps before labelled containers)', () => {
    const idx = new HostIndex([
      { key: 'docker:aaa', target: 'container', hosts: ['shop.example.com'], rank: 1 },
      { key: 'process:shop', target: 'app', hosts: ['shop.example.com'], rank: 0 },
    ])
    assert.equal(idx.resolve('shop.example.com'), 'app')
    assert.deepEqual(idx.problems.map((p) => p.key), ['docker:aaa'])
  })

  it('caches raw Host hits only, so random names cost no memory', () => {
    const idx = new HostIndex([{ key: 'k', target: 't', hosts: ['a.example.com'] }])
    // canonical: the spelling Caddy's site matchers and loggers see as written (issue 19: only it gets a ticket)
    assert.deepEqual(idx.lookupRaw('A.example.com:443'), { target: 't', host: 'a.example.com', canonical: false })
    assert.deepEqual(idx.lookupRaw('A.example.com:443'), { target: 't', host: 'a.example.com', canonical: false }, 'cached')
    assert.deepEqual(idx.lookupRaw('a.example.com:443'), { target: 't', host: 'a.example.com', canonical: true })
    for (let i = 0; i < 1000; i++) idx.lookupRaw(`r${i}.example.com`)
    assert.equal((idx as unknown as { rawHits: Map<string, unknown> }).rawHits.size, 2)
    assert.deepEqual(idx.lookupRaw('in valid'), { target: undefined, host: undefined, canonical: false })
  })
})

describe('plainHttpToRemote', () => {
  it('flags plain http to other hosts only', () => {
    assert.equal(plainHttpToRemote('http://router.example/heartbeat'), true)
    assert.equal(plainHttpToRemote('http://10.0.0.5:8080/'), true)
    assert.equal(plainHttpToRemote('https://router.example/'), false)
    for (const local of ['http://127.0.0.1:9/', 'http://localhost/', 'http://[::1]:80/', 'http://x.localhost/']) assert.equal(plainHttpToRemote(local), false, local)
    assert.equal(plainHttpToRemote('not a url'), false)
  })
})
