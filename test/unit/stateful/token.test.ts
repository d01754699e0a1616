import assert from 'node:assert/strict'
import { createDecipheriv } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { isRelightError } from '../../../sidecar/core/errors.js'
import { secretProblem, TokenCipher } from '../../../sidecar/routing/stateful/token.js'

/**
 * Test vectors from an independent implementation (shared/vectors/doors-tokens.json, vendored
 * in test/fixtures so this check runs in every checkout).
 */
const VECTORS = fileURLToPath(new URL('../../../../test/fixtures/doors-tokens.json', import.meta.url))

interface VectorSet {
  secret: string
  aad: string
  valid: { token: string; ip: string }[]
  invalid: { token: string; why: string }[]
}

const vectors: { sets: VectorSet[] } = JSON.parse(readFileSync(VECTORS, 'utf8'))

/** Decrypt by the documented format alone (not through TokenCipher), to check what encode() makes. */
function decryptBySpec(secret: string, token: string): Buffer {
  const key = Buffer.from(secret, 'base64')
  const data = Buffer.from(token, 'base64url')
  const d = createDecipheriv(`aes-${key.length * 8}-gcm` as 'aes-256-gcm', key, data.subarray(0, 12), { authTagLength: 16 })
  d.setAAD(Buffer.from('doors-pod-ip-v1'))
  d.setAuthTag(data.subarray(data.length - 16))
  return Buffer.concat([d.update(data.subarray(12, data.length - 16)), d.final()])
}

describe('doors token vectors (independent implementation)', () => {
  for (const [n, set] of vectors.sets.entries()) {
    const cipher = new TokenCipher(set.secret)
    test(`set ${n}: every valid token decodes to its IP`, () => {
      assert.equal(set.aad, 'doors-pod-ip-v1')
      assert.ok(set.valid.length > 0)
      for (const v of set.valid) assert.equal(cipher.decode(v.token), v.ip, v.token)
    })
    test(`set ${n}: every invalid token is rejected`, () => {
      assert.ok(set.invalid.length > 0)
      for (const v of set.invalid) {
        assert.equal(cipher.decodeBytes(v.token), undefined, `${v.why}: ${v.token}`)
        assert.throws(() => cipher.decode(v.token), (err) => isRelightError(err, 'RELIGHT_ERR_STATEFUL_GONE'), v.why)
      }
    })
    test(`set ${n}: tokens we encode decode by the documented format and by us`, () => {
      for (const v of set.valid) {
        const token = cipher.encode(v.ip)
        assert.match(token, /^[A-Za-z0-9_-]+$/, 'base64url without padding')
        assert.equal(cipher.decode(token), v.ip)
        const plain = decryptBySpec(set.secret, token)
        assert.equal(plain.length, v.ip.includes(':') ? 16 : 4)
      }
    })
  }
})

describe('TokenCipher', () => {
  const secret = Buffer.alloc(32, 7).toString('base64')
  const cipher = new TokenCipher(secret)

  test('round-trips IPv4 and IPv6, with a fresh nonce each time', () => {
    for (const ip of ['127.0.0.2', '10.0.0.1', '::1', 'fd00::5', '2001:db8::1:0:0:1', '::ffff:10.1.2.3']) {
      const a = cipher.encode(ip)
      const b = cipher.encode(ip)
      assert.notEqual(a, b)
      assert.equal(cipher.decode(a), ip)
      assert.equal(cipher.decode(b), ip)
    }
    assert.equal(cipher.encode('127.0.0.2').length, 43) // 12 + 4 + 16 bytes
    assert.equal(cipher.encode('fd00::5').length, 59) // 12 + 16 + 16 bytes
  })

  test('plaintext is the raw address bytes', () => {
    assert.deepEqual([...decryptBySpec(secret, cipher.encode('127.0.0.2'))], [127, 0, 0, 2])
  })

  test('AES-128 and AES-192 keys work; other keys reject each other', () => {
    for (const size of [16, 24]) {
      const c = new TokenCipher(Buffer.alloc(size, 1).toString('base64'))
      assert.equal(c.decode(c.encode('127.0.0.3')), '127.0.0.3')
      assert.equal(cipher.decodeBytes(c.encode('127.0.0.3')), undefined)
    }
  })

  test('rejects padding, standard-base64 characters, odd lengths and wrong plaintext sizes', () => {
    const token = cipher.encode('127.0.0.2')
    assert.equal(cipher.decodeBytes(`${token}=`), undefined)
    assert.equal(cipher.decodeBytes(`${token.slice(0, -2)}+/`), undefined)
    assert.equal(cipher.decodeBytes(''), undefined)
    assert.equal(cipher.decodeBytes(token.slice(0, -1)), undefined)
    assert.equal(cipher.decodeBytes(`${token}AAAA`), undefined)
  })

  test('bad secrets and bad addresses are refused with a reason', () => {
    assert.match(secretProblem('not base64!') ?? '', /base64/)
    assert.match(secretProblem(Buffer.alloc(20).toString('base64')) ?? '', /20 bytes/)
    assert.match(secretProblem(Buffer.alloc(32).toString('base64url')) ?? '', /base64/) // no padding / url alphabet
    assert.equal(secretProblem(Buffer.alloc(32).toString('base64')), undefined)
    assert.throws(() => new TokenCipher('short'), (err) => isRelightError(err, 'RELIGHT_ERR_CONFIG'))
    assert.throws(() => cipher.encode('localhost'), TypeError)
    assert.throws(() => cipher.encode('fe80::1%eth0'), TypeError)
  })
})
