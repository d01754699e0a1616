import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { parseConfig } from '../../sidecar/config/load.js'
import { WaitingPages } from '../../sidecar/pages/template.js'
import { tempDir } from '../helpers/net.js'

const tmp = tempDir('relight-template-')
after(() => tmp.remove())

describe('waiting_page_template', () => {
  writeFileSync(join(tmp.dir, 'default.html'), '<p>default {{host}} in {{ retry_after }}s</p>')
  writeFileSync(join(tmp.dir, 'own.html'), '<title>{{host}}</title><meta http-equiv="refresh" content="{{retry_after}}">')
  writeFileSync(join(tmp.dir, 'typo.html'), '<p>{{hots}}</p>')
  const config = (defaults: string, app = '') =>
    parseConfig(
      `defaults: { ${defaults} }\nproviders:\n  process:\n    apps:\n      - { name: a, hosts: [a.localhost], command: [x], port: 3001${app} }\n`,
      'test',
    )

  it('fills {{host}} and {{retry_after}} HTML-escaped, per backend over the default, and falls back to the built-in page', () => {
    const pages = WaitingPages.load(config('waiting_page_template: default.html', ', waiting_page_template: own.html'), tmp.dir)
    assert.equal(pages.render({}, 'x<y>&"z\'', 3), '<p>default x&lt;y&gt;&amp;&quot;z&#39; in 3s</p>')
    assert.equal(pages.render({ waiting_page_template: 'own.html' }, 'a.localhost', 2), '<title>a.localhost</title><meta http-equiv="refresh" content="2">')
    const builtIn = WaitingPages.load(config('idle_timeout: 5m'), tmp.dir).render({}, 'a.localhost', 2)
    assert.match(builtIn, /Starting a\.localhost/)
    assert.match(builtIn, /<meta http-equiv="refresh" content="2">/)
  })

  it('is a configuration error naming the key when the file is missing or has an unknown placeholder', () => {
    assert.throws(
      () => WaitingPages.load(config('idle_timeout: 5m', ', waiting_page_template: nope.html'), tmp.dir),
      (err: Error) => /providers\.process(\[0\])?\.apps\[0\]\.waiting_page_template: .*nope\.html not found/.test(err.message),
    )
    assert.throws(() => WaitingPages.load(config('waiting_page_template: typo.html'), tmp.dir), /defaults\.waiting_page_template: unknown placeholder \{\{hots\}\}/)
  })
})
