/**
 * The README's Operations section stays true: its metric table lists exactly the metrics the
 * sidecar registers, its Prometheus scrape config passes `promtool check config`, and its alert
 * rules pass `promtool check rules` and fire on the series they are about (`promtool test rules`).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import { LIFECYCLE_EVENT_TYPES } from '../../sidecar/core/events.js'
import { METRIC_NAMES } from '../../sidecar/ops/metrics.js'
import { tempDir } from '../helpers/net.js'
import { promtoolSkip } from '../helpers/prometheus.js'

const root = fileURLToPath(new URL('../../../', import.meta.url))
const readme = readFileSync(join(root, 'README.md'), 'utf8')
const block = (name: string, lang = 'yaml'): string => {
  const m = new RegExp('```' + lang + ' ' + name.replace('.', '\\.') + '\\n([\\s\\S]*?)```').exec(readme)
  assert.ok(m?.[1], `README has a \`\`\`${lang} ${name} block`)
  return m[1]
}

describe('README operations section', () => {
  it('lists every metric and every lifecycle event type', () => {
    const listed = new Set([...readme.matchAll(/^\| `(relight_[a-z_]+)` \|/gm)].map((m) => m[1]))
    assert.deepEqual([...listed].sort(), [...METRIC_NAMES].sort())
    for (const type of LIFECYCLE_EVENT_TYPES) assert.ok(readme.includes(`\`${type}\``), `README explains ${type}`)
  })

  it('shows a scrape config and alert rules that promtool accepts, and the rules fire', (t) => {
    const skip = promtoolSkip()
    if (skip) return t.skip(skip)
    const tmp = tempDir('relight-promtool-')
    try {
      // The README's steps as written, /etc/prometheus moved: the files first, then its setup
      // block (token file, promtool check config), which must succeed with nothing added.
      const adminToken = join(tmp.dir, 'admin-token') // the sidecar's token file (README, Configure)
      writeFileSync(adminToken, `${'t'.repeat(24)}\n`, { mode: 0o600 })
      const moved = (text: string) => text.replaceAll('/etc/prometheus', tmp.dir).replaceAll('/etc/relight/admin-token', adminToken)
      writeFileSync(join(tmp.dir, 'prometheus.yml'), moved(block('prometheus.yml')))
      writeFileSync(join(tmp.dir, 'relight-alerts.yml'), block('relight-alerts.yml'))
      const setup = spawnSync('sh', ['-e', '-c', moved(block('prometheus-setup', 'sh'))], { encoding: 'utf8' })
      assert.equal(setup.status, 0, setup.stdout + setup.stderr)
      assert.match(setup.stdout, /SUCCESS/, 'promtool check config ran')
      assert.equal(readFileSync(join(tmp.dir, 'relight-admin-token'), 'utf8'), `${'t'.repeat(24)}\n`)
      const rules = spawnSync('promtool', ['check', 'rules', join(tmp.dir, 'relight-alerts.yml')], { encoding: 'utf8' })
      assert.equal(rules.status, 0, rules.stdout + rules.stderr)

      writeFileSync(
        join(tmp.dir, 'tests.yml'),
        `rule_files: [relight-alerts.yml]
evaluation_interval: 30s
tests:
  - interval: 1m
    input_series:
      - series: 'relight_wakes_total{provider="docker",backend="shop",result="failed"}'
        values: '1 1 1 1 1 1 1 1 2 2 2 2' # increase() at 10m30s extrapolates this to 1.11
      - series: 'relight_provider_up{provider="docker"}'
        values: '1 0 0 0 0 0 0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 10m30s
        alertname: RelightWakeFailures
        exp_alerts:
          - exp_labels: { severity: warning, provider: docker, backend: shop }
            exp_annotations: { summary: "shop (docker) failed to wake 1 time(s) in 10 minutes" }
      - eval_time: 11m
        alertname: RelightProviderDown
        exp_alerts:
          - exp_labels: { severity: critical, provider: docker }
            exp_annotations: { summary: "relight-sidecar cannot list provider docker: its backends are not updated" }
`,
      )
      const test = spawnSync('promtool', ['test', 'rules', 'tests.yml'], { encoding: 'utf8', cwd: tmp.dir })
      assert.equal(test.status, 0, test.stdout + test.stderr)
    } finally {
      tmp.remove()
    }
  })
})
