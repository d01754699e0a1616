import assert from 'node:assert/strict'
import { test } from 'node:test'
import { cookieValue, tokenFromUri } from '../../../sidecar/routing/stateful/request.js'

test('token from a Doors system path', () => {
  assert.equal(tokenFromUri('/~/abc'), 'abc')
  assert.equal(tokenFromUri('/~/abc/'), 'abc')
  assert.equal(tokenFromUri('/~/abc/x/y?z=1'), 'abc')
  assert.equal(tokenFromUri('/~/abc?z=/x'), 'abc')
  assert.equal(tokenFromUri('/%7E/abc/x'), 'abc') // Go matches on the decoded path
})

test('not a system path: ordinary routing (doors-caddy parity)', () => {
  for (const uri of [undefined, '', '/', '/~', '/~/', '/~//', '/~//x', '/~//abc/x', '/~?x', '/x/~/abc', '~/abc', '/~~/abc', '/~/%zz/x', 'http://h/~/abc']) {
    assert.equal(tokenFromUri(uri), undefined, String(uri))
  }
})

test('cookie parsing matches Go r.Cookie(name)', () => {
  assert.equal(cookieValue(undefined, 'upstream'), undefined)
  assert.equal(cookieValue('', 'upstream'), undefined)
  assert.equal(cookieValue('upstream=tok', 'upstream'), 'tok')
  assert.equal(cookieValue('a=1; upstream=tok; b=2', 'upstream'), 'tok')
  assert.equal(cookieValue('a=1;upstream=tok', 'upstream'), 'tok')
  assert.equal(cookieValue('upstream="tok"', 'upstream'), 'tok')
  assert.equal(cookieValue('upstream=first; upstream=second', 'upstream'), 'first')
  assert.equal(cookieValue('xupstream=no; upstreamx=no', 'upstream'), undefined)
  assert.equal(cookieValue('a=upstream=no', 'upstream'), undefined)
  assert.equal(cookieValue('upstream', 'upstream'), undefined)
  assert.equal(cookieValue('upstream=', 'upstream'), '')
  assert.equal(cookieValue('a=1; upstream=tok_-x; ', 'upstream'), 'tok_-x')
})
