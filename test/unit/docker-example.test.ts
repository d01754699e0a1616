/** examples/docker-compose: its config, the README's sample block and the compose labels are valid as shipped. */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { parseConfig } from '../../sidecar/config/load.js'
import { groupOf, isRouted, readLabels } from '../../sidecar/providers/kit/labels.js'

const dir = fileURLToPath(new URL('../../../examples/docker-compose/', import.meta.url))

describe('examples/docker-compose', () => {
  it('relight.yaml and the README sample configuration parse', () => {
    const config = parseConfig(readFileSync(`${dir}relight.yaml`, 'utf8'), 'examples/docker-compose/relight.yaml')
    assert.equal(config.providers.docker?.[0]?.label_prefix, 'relight')
    const readme = readFileSync(`${dir}README.md`, 'utf8')
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string)
    assert.ok(blocks.length >= 1)
    for (const block of blocks) parseConfig(block, 'examples/docker-compose/README.md')
  })

  it('the compose file routes web, leaves db unrouted, and puts both in one group', () => {
    const compose = parse(readFileSync(`${dir}docker-compose.yml`, 'utf8')) as { services: Record<string, { labels?: Record<string, string> }> }
    const project = { 'com.docker.compose.project': 'relight-example' }
    const web = { ...(compose.services.web?.labels ?? {}), ...project }
    const db = { ...(compose.services.db?.labels ?? {}), ...project }
    const facts = readLabels(web, 'relight')
    assert.deepEqual(facts.problems, [])
    assert.deepEqual(facts.hosts, ['web.localhost'])
    assert.equal(facts.port, 8181)
    assert.equal(isRouted(db, 'relight'), false)
    assert.equal(groupOf(web, 'relight'), groupOf(db, 'relight'))
  })
})
