import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Cidr, dialAddress, formatIp, parseIp } from '../../../sidecar/routing/stateful/ip.js'

const ip = (text: string) => {
  const b = parseIp(text)
  assert.ok(b, text)
  return b
}

test('parseIp / formatIp', () => {
  assert.deepEqual([...ip('127.0.0.2')], [127, 0, 0, 2])
  assert.deepEqual([...ip('::1')], [...new Array(15).fill(0), 1])
  assert.deepEqual([...ip('::ffff:1.2.3.4')], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4])
  assert.deepEqual([...ip('::1.2.3.4')], [...new Array(12).fill(0), 1, 2, 3, 4])
  assert.deepEqual([...ip('1:2:3:4:5:6:7:8')], [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8])
  for (const text of ['127.0.0.2', '::', '::1', 'fd00::5', '2001:db8::1:0:0:1', '1:2:3:4:5:6:7:8', '1::', 'fd00:0:1::']) {
    assert.equal(formatIp(ip(text)), text)
  }
  assert.equal(formatIp(ip('FD00:0000::0005')), 'fd00::5')
  for (const bad of ['', 'localhost', '1.2.3', '256.0.0.1', '1.2.3.04', 'fe80::1%eth0', '[::1]', '1::2::3', '127.0.0.1/32']) {
    assert.equal(parseIp(bad), undefined, bad)
  }
})

test('dialAddress brackets IPv6', () => {
  assert.equal(dialAddress('127.0.0.2', 8080), '127.0.0.2:8080')
  assert.equal(dialAddress('fd00::5', 8080), '[fd00::5]:8080')
})

test('IPv4 CIDR matching', () => {
  const c = Cidr.parse('127.0.0.0/24')
  assert.ok(c)
  assert.ok(c.contains(ip('127.0.0.2')))
  assert.ok(c.contains(ip('127.0.0.255')))
  assert.ok(!c.contains(ip('127.0.1.2')))
  const host = Cidr.parse('127.0.0.2/32')
  assert.ok(host?.contains(ip('127.0.0.2')))
  assert.ok(!host?.contains(ip('127.0.0.3')))
  const odd = Cidr.parse('127.0.0.2/31') // .2 and .3
  assert.ok(odd?.contains(ip('127.0.0.3')) && odd.contains(ip('127.0.0.2')) && !odd.contains(ip('127.0.0.4')))
  const mid = Cidr.parse('10.0.0.0/20')
  assert.ok(mid?.contains(ip('10.0.15.255')) && !mid.contains(ip('10.0.16.0')))
  assert.ok(Cidr.parse('0.0.0.0/0')?.contains(ip('203.0.113.9')))
  assert.equal(Cidr.parse('10.0.0.7/24')?.text, '10.0.0.0/24') // host bits ignored, like Go's ParsePrefix + Contains
})

test('IPv6 CIDR matching; families never mix', () => {
  const c = Cidr.parse('fd00::/64')
  assert.ok(c?.contains(ip('fd00::5')))
  assert.ok(c?.contains(ip('fd00::ffff:ffff:ffff:ffff')))
  assert.ok(!c?.contains(ip('fd00:0:0:1::5')))
  assert.ok(Cidr.parse('::1/128')?.contains(ip('::1')))
  assert.ok(!Cidr.parse('::1/128')?.contains(ip('::2')))
  assert.ok(Cidr.parse('fd00::/7')?.contains(ip('fc12::1')))
  assert.ok(!Cidr.parse('127.0.0.0/8')?.contains(ip('::ffff:127.0.0.2')))
  assert.ok(!Cidr.parse('::/0')?.contains(ip('127.0.0.2')))
})

test('malformed CIDRs are refused', () => {
  for (const bad of ['127.0.0.1', '127.0.0.0/33', 'fd00::/129', '127.0.0.0/', '/24', 'x/24', '127.0.0.0/-1', '127.0.0.0/2a', 'fd00::/0x']) {
    assert.equal(Cidr.parse(bad), undefined, bad)
  }
})
