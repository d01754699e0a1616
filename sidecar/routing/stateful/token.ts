/**
 * Pod-IP tokens in doors-caddy's format, so a Doors app (or any app) and the sidecar share one
 * secret and need no change when moving from doors-caddy to relight-sidecar:
 *
 *   token = base64url-without-padding( nonce[12] ‖ AES-GCM ciphertext ‖ tag[16] )
 *   key   = standard base64 secret (16, 24 or 32 bytes: AES-128/192/256)
 *   AAD   = "doors-pod-ip-v1",  plaintext = the raw 4- or 16-byte IP
 *
 * Apps import it as `import { TokenCipher } from 'relight-sidecar/token'` and do what
 * doors-caddy's `NewTokenCipher(secret).Encode(ip)` does:
 *
 *   const token = new TokenCipher(process.env.SECRET).encode(process.env.POD_IP)
 */
import { createCipheriv, createDecipheriv, randomBytes, type CipherGCMTypes } from 'node:crypto'
import { RelightError } from '../../core/errors.js'
import { formatIp, parseIp } from './ip.js'

const AAD = Buffer.from('doors-pod-ip-v1')
const NONCE = 12
const TAG = 16
const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const URL_BASE64_RAW = /^[A-Za-z0-9_-]+$/
/** Shortest and longest token: 12 + 4 + 16 and 12 + 16 + 16 bytes, base64url without padding. */
const MIN_TOKEN = Math.ceil(((NONCE + 4 + TAG) * 4) / 3)
const MAX_TOKEN = Math.ceil(((NONCE + 16 + TAG) * 4) / 3)

/** Why a secret is unusable, or undefined when it is a standard-base64 AES key of 16, 24 or 32 bytes. */
export function secretProblem(secret: string): string | undefined {
  if (!STD_BASE64.test(secret)) return 'not standard base64 (with = padding); make one with `openssl rand -base64 32`'
  const n = Buffer.from(secret, 'base64').length
  if (n !== 16 && n !== 24 && n !== 32) return `decodes to ${n} bytes; an AES key has 16, 24 or 32`
  return undefined
}

export class TokenCipher {
  private readonly key: Buffer
  private readonly algorithm: CipherGCMTypes

  /** `secret`: the AES key in standard base64, shared with the app (doors-caddy's `secret`). */
  constructor(secret: string) {
    const problem = secretProblem(secret)
    if (problem !== undefined) throw new RelightError('RELIGHT_ERR_CONFIG', `token secret: ${problem}`)
    this.key = Buffer.from(secret, 'base64')
    this.algorithm = `aes-${this.key.length * 8}-gcm` as CipherGCMTypes
  }

  /**
   * Encrypt an IPv4 or IPv6 address (text) into a token, with a fresh random nonce each call
   * (apps and tests issue tokens; the sidecar only reads them). A malformed address is the
   * caller's mistake: TypeError, not a configuration error.
   */
  encode(ip: string): string {
    const bytes = parseIp(ip)
    if (!bytes) throw new TypeError(`"${ip}" is not an IPv4 or IPv6 address`)
    return this.encodeBytes(bytes)
  }

  /** Encrypt raw 4- or 16-byte address. */
  encodeBytes(ip: Uint8Array): string {
    if (ip.length !== 4 && ip.length !== 16) throw new TypeError('an IP address has 4 or 16 bytes')
    const nonce = randomBytes(NONCE)
    const cipher = createCipheriv(this.algorithm, this.key, nonce, { authTagLength: TAG })
    cipher.setAAD(AAD)
    const body = Buffer.concat([cipher.update(ip), cipher.final()])
    return Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url')
  }

  /** The address a token carries, as text. Throws RELIGHT_ERR_STATEFUL_GONE when it does not decrypt. */
  decode(token: string): string {
    const bytes = this.decodeBytes(token)
    if (!bytes) throw new RelightError('RELIGHT_ERR_STATEFUL_GONE', 'the token does not decrypt to an IP address with this secret')
    return formatIp(bytes)
  }

  /** The raw 4 or 16 address bytes, or undefined for anything that is not a valid token (no exception). */
  decodeBytes(token: string): Buffer | undefined {
    if (token.length < MIN_TOKEN || token.length > MAX_TOKEN || !URL_BASE64_RAW.test(token)) return undefined
    if (token.length % 4 === 1) return undefined // no base64 text has this length
    const data = Buffer.from(token, 'base64url')
    const plainLength = data.length - NONCE - TAG
    if (plainLength !== 4 && plainLength !== 16) return undefined
    const decipher = createDecipheriv(this.algorithm, this.key, data.subarray(0, NONCE), { authTagLength: TAG })
    decipher.setAAD(AAD)
    decipher.setAuthTag(data.subarray(data.length - TAG))
    try {
      return Buffer.concat([decipher.update(data.subarray(NONCE, data.length - TAG)), decipher.final()])
    } catch {
      return undefined // authentication failed: other key, other AAD, tampered
    }
  }
}
