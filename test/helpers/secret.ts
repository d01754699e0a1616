import { randomBytes } from 'node:crypto'

/** A token or secret the config accepts (what `openssl rand -hex 32` makes). */
export function testSecret(): string {
  return randomBytes(32).toString('hex')
}
