/** Apps import the token API by package name: `import { TokenCipher } from 'relight-sidecar/token'`. */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { test } from 'node:test'

test('relight-sidecar/token resolves through package.json exports, with its types', async () => {
  const specifier = 'relight-sidecar/token' // package self-reference: works from inside the package
  const mod = (await import(specifier)) as typeof import('../../../sidecar/routing/stateful/token.js')
  const cipher = new mod.TokenCipher(Buffer.alloc(16, 3).toString('base64'))
  assert.equal(cipher.decode(cipher.encode('127.0.0.2')), '127.0.0.2')
  assert.ok(existsSync(new URL('../../../sidecar/routing/stateful/token.d.ts', import.meta.url)), 'token.d.ts is emitted for the "types" condition')
})
