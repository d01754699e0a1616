/**
 * The per-backend settings table (core/settings.ts) is the one source of names and bounds for
 * every input: YAML (defaults, each provider block, app entries), Docker/Podman labels and
 * Slicer tags. A bound must hold in all of them; `wake_timeout: 1ms` used to slip through some.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import { BACKEND_SETTINGS, type SettingSpec } from '../../sidecar/core/settings.js'
import { readLabels } from '../../sidecar/providers/kit/labels.js'
import { parseTags } from '../../sidecar/providers/slicer/tags.js'
import type { ProviderPlugin } from '../../sidecar/providers/plugin.js'
import { PROVIDER_PLUGINS } from '../../sidecar/providers/plugins.js'
import { createProviders } from '../../sidecar/providers/index.js'

/** A minimal valid block of each kind, parsed, for the codecs that read their config. */
const MINIMAL: Record<string, unknown> = { process: {}, docker: {}, podman: {}, slicer: { url: '/run/slicer.sock' } }
const plugins = PROVIDER_PLUGINS as readonly ProviderPlugin[]

const yamlProblems = (text: string): string[] => {
  try {
    parseConfig(text, 't', {})
    return []
  } catch (err) {
    return [...((err as { problems?: string[] }).problems ?? [String(err)])]
  }
}

/** Every place a per-backend setting can be written, as (key, value) → problems. */
const INPUTS: Record<string, (key: string, value: string) => string[]> = {
  'defaults': (k, v) => yamlProblems(`defaults:\n  ${k}: ${v}\n`),
  'providers.docker': (k, v) => yamlProblems(`providers:\n  docker:\n    ${k}: ${v}\n`),
  'providers.docker (list form)': (k, v) => yamlProblems(`providers:\n  docker:\n    - id: d1\n      ${k}: ${v}\n`),
  'providers.podman': (k, v) => yamlProblems(`providers:\n  podman:\n    ${k}: ${v}\n`),
  'providers.slicer': (k, v) => yamlProblems(`providers:\n  slicer:\n    url: /run/slicer.sock\n    ${k}: ${v}\n`),
  'providers.process app entry': (k, v) => yamlProblems(`providers:\n  process:\n    apps:\n      - { name: a, command: [x], ${k}: ${v} }\n`),
  'docker label': (k, v) => readLabels({ 'relight.domain': 'a.localhost', [`relight.${k}`]: v }, 'relight').problems,
  'podman label': (k, v) => readLabels({ 'relight.domain': 'a.localhost', [`relight.${k}`]: v }, 'relight', ['checkpoint', 'pause', 'stop']).problems,
  'slicer tag': (k, v) => parseTags(['a.example.com', `relight.${k}=${v}`]).problems,
}
// …and every settings codec of the provider table (Kubernetes annotations, Swarm labels join here).
for (const plugin of plugins) {
  const codec = plugin.settings
  if (!codec) continue
  const config = plugin.configSchema.parse(MINIMAL[plugin.kind] ?? {})
  INPUTS[`${plugin.kind} ${codec.carrier} (table codec)`] = (k, v) => [...codec.read({ [codec.name(k as never, config)]: v }, config).problems]
}

describe('per-backend settings table', () => {
  it('wake_timeout: 1ms is refused by every input, and 100ms accepted by every input', () => {
    for (const [input, problems] of Object.entries(INPUTS)) {
      const refused = problems('wake_timeout', '1ms')
      assert.equal(refused.length, 1, `${input} must refuse wake_timeout 1ms; got ${JSON.stringify(refused)}`)
      assert.match(refused[0] ?? '', /wake_timeout.*at least 100ms/, input)
      assert.deepEqual(problems('wake_timeout', '100ms'), [], `${input} must accept wake_timeout 100ms`)
    }
  })

  it('every bounded duration in the table holds in every input', () => {
    for (const spec of BACKEND_SETTINGS as readonly SettingSpec[]) {
      if (!spec.min) continue
      for (const [input, problems] of Object.entries(INPUTS)) {
        assert.equal(problems(spec.key, `${spec.min.ms - 1}ms`).length, 1, `${input}: ${spec.key} below ${spec.min.ms}ms`)
        assert.deepEqual(problems(spec.key, `${spec.min.ms}ms`), [], `${input}: ${spec.key} at ${spec.min.ms}ms`)
      }
    }
  })

  it('the provider table: each kind makes providers of that kind and sleep modes, named by their id', async () => {
    for (const plugin of plugins) {
      const config = { ...(plugin.configSchema.parse(MINIMAL[plugin.kind] ?? {}) as object), id: `${plugin.kind}-x` }
      const provider = plugin.create(config, { logger: pino({ level: 'silent' }), baseDir: process.cwd(), defaults: { app_port: 8080, sleep: 'stop', fallback_sleep: 'pause' } })
      assert.equal(provider.kind, plugin.kind)
      assert.equal(provider.id, `${plugin.kind}-x`)
      assert.deepEqual(provider.sleepModes, plugin.sleepModes, plugin.kind)
      await provider.close?.()
    }
  })

  it('an old re-list key is logged once as deprecated when the provider is built, and sets its resync interval', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) })
    const config = parseConfig('providers:\n  podman: { watch_interval: 10s }\n  slicer: { url: /s.sock }\n', 't', {})
    const providers = createProviders(config, logger, { baseDir: process.cwd() })
    assert.deepEqual(providers.map((p) => [p.id, p.resyncInterval]), [['podman', 10_000], ['slicer', undefined]])
    const warnings = lines.map((l) => JSON.parse(l) as { msg: string; provider: string })
    assert.deepEqual(warnings.map((w) => [w.provider, w.msg]), [['podman', 'providers.podman.watch_interval is deprecated; write resync_interval (same meaning)']])
    for (const p of providers) await p.close?.()
  })

  it('labels and tags read every key of the table (a config-only key is reported, not read)', () => {
    const values: Record<string, string> = { duration: '2m', sleep: 'pause', strategy: 'waiting_page', readiness: 'http:/up', ignore: 'user_agent=UptimeRobot; path=/up,method=HEAD', status: '503', percent: '10%', switch: 'on', schedule: 'Mon-Fri 08:00-18:00 Europe/Berlin' }
    for (const spec of BACKEND_SETTINGS as readonly SettingSpec[]) {
      if (spec.configOnly) {
        const label = readLabels({ 'relight.domain': 'a.localhost', [`relight.${spec.key}`]: '/etc/shadow' }, 'relight')
        assert.equal(label.settings[spec.key], undefined, `docker label relight.${spec.key} is ignored`)
        assert.equal(label.problems.length, 1, `docker label relight.${spec.key} is reported`)
        const tags = parseTags([`relight.${spec.key}=/etc/shadow`])
        assert.equal(tags.settings[spec.key], undefined, `slicer tag relight.${spec.key} is ignored`)
        assert.equal(tags.problems.length, 1, `slicer tag relight.${spec.key} is reported`)
        continue
      }
      const v = values[spec.type] as string
      const label = readLabels({ 'relight.domain': 'a.localhost', [`relight.${spec.key}`]: v }, 'relight')
      assert.deepEqual(label.problems, [], spec.key)
      assert.notEqual(label.settings[spec.key], undefined, `docker label relight.${spec.key}`)
      const tags = parseTags([`relight.${spec.key}=${v}`])
      assert.deepEqual(tags.problems, [], spec.key)
      assert.notEqual(tags.settings[spec.key], undefined, `slicer tag relight.${spec.key}`)
    }
  })
})
