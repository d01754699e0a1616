/**
 * On-demand TLS through real Caddy 2.6 (`tls internal` + `on_demand`, `ask` to the sidecar):
 * twenty spellings of one name in the TLS SNI get exactly one certificate.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { caddySkip, certificates, handshake, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { MemoryProvider } from '../fakes/memory-provider.js'

const skip = caddySkip()

const NAME = 'shop.apps.example.com'
const SPELLINGS = [
  NAME,
  'SHOP.apps.example.com',
  'Shop.Apps.Example.Com',
  'SHOP.APPS.EXAMPLE.COM',
  `${NAME}.`,
  `${NAME}..`,
  'shop。apps。example。com', // ideographic full stops
  'shop．apps．example．com', // fullwidth full stops
  'shop｡apps｡example｡com', // halfwidth ideographic full stops
  `${NAME}\u3002`,
  'ＳＨＯＰ.apps.example.com', // fullwidth letters
  'ｓｈｏｐ.apps.example.com',
  'ſhop.apps.example.com', // long s
  'sh\u00adop.apps.example.com', // soft hyphen
  'sh\u200bop.apps.example.com', // zero-width space
  'sh\u200cop.apps.example.com', // zero-width non-joiner
  'sh\u200dop.apps.example.com', // zero-width joiner
  's\u034fhop.apps.example.com', // combining grapheme joiner
  'shop\ufeff.apps.example.com', // zero-width no-break space
  'shop.apps.EXAMPLE.com',
]



describe('on-demand TLS asks the sidecar: one certificate per name', { skip }, () => {
  let sc: TestSidecar
  let caddy: RunningCaddy
  before(async () => {
    const provider = new MemoryProvider([{ id: 'shop', hosts: ['shop'], state: 'stopped', upstreams: ['127.0.0.1:1'] }])
    sc = await startTestSidecar('base_domains: [apps.example.com]\nresync_interval: 0s\n', { providers: [provider], accessLog: false })
    caddy = await startCaddy({
      sidecar: sc.address,
      global: `\tskip_install_trust\n\ton_demand_tls {\n\t\task ${sc.url}/_relight/ask\n\t}\n`,
      sites: (port) => `https://:${port} {\n\tbind 127.0.0.1\n\ttls internal {\n\t\ton_demand\n\t}\n\trespond "ok"\n}\n`,
    })
  })
  after(async () => {
    await caddy?.close()
    await sc?.close()
  })

  it('twenty SNI spellings of one name → exactly one certificate, for the canonical name', async () => {
    assert.equal(SPELLINGS.length, 20)
    assert.equal(new Set(SPELLINGS).size, 20)
    const results: Record<string, boolean> = {}
    for (const name of SPELLINGS) results[name] = await handshake(caddy.port, name)
    assert.equal(results[NAME], true, 'the canonical name gets its certificate')
    const certs = certificates(caddy.storage)
    assert.deepEqual(certs, [`${NAME}.crt`], `handshakes: ${JSON.stringify(results)}`)
    // and a random name under the base domain that no backend declares gets nothing
    assert.equal(await handshake(caddy.port, 'nobody.apps.example.com'), false)
    assert.deepEqual(certificates(caddy.storage), [`${NAME}.crt`])
  })
})
