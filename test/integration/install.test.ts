/**
 * The package as operators install it: `npm pack` → `npm install -g ./relight-sidecar-<v>.tgz`
 * into a temporary prefix → the `relight-sidecar` command works (help, snippet, check), with no
 * EBADENGINE warning on Node 24; and a built checkout runs after `npm ci --omit=dev`.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { freePort, tempDir } from '../helpers/net.js'
import { node24 } from '../helpers/node24.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
const APP = join(ROOT, 'test/fixtures/http-app.mjs')

function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 180_000, ...options })
  return { code: r.status, out: r.stdout ?? '', err: r.stderr ?? '', all: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` }
}

/** npm's own CLI script, so that it can be run by another Node binary. */
function npmCli(): string {
  const root = run('npm', ['root', '-g']).out.trim()
  const cli = join(root, 'npm/bin/npm-cli.js')
  assert.ok(existsSync(cli), `npm-cli.js not found under ${root}`)
  return cli
}

describe('install from the npm pack tarball', () => {
  const tmp = tempDir('relight-install-')
  const node = node24() ?? process.execPath
  const npm = (args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) =>
    run(node, [npmCli(), ...args, '--no-audit', '--no-fund', '--prefer-offline'], options)
  // The installed command finds `node` on the PATH (#!/usr/bin/env node): the one under test.
  const env = { ...process.env, PATH: `${join(tmp.dir, 'prefix/bin')}:${dirname(node)}:${process.env.PATH ?? ''}` }
  let tarball: string
  after(() => tmp.remove())

  before(() => {
    // dist/ is built by `npm test`; --ignore-scripts so that prepack does not rebuild it under
    // the tests running beside this one.
    const r = run('npm', ['pack', '--ignore-scripts', '--pack-destination', tmp.dir], { cwd: ROOT })
    assert.equal(r.code, 0, r.all)
    tarball = join(tmp.dir, `relight-sidecar-${VERSION}.tgz`)
  })

  it('the tarball holds the built JavaScript, the snippet and no tests', () => {
    const files = run('tar', ['tzf', tarball]).out.split('\n')
    for (const f of ['package/dist/sidecar/main.js', 'package/dist/sidecar/daemon.js', 'package/caddy/relight.caddy', 'package/package.json']) {
      assert.ok(files.includes(f), `${f} is in the tarball`)
    }
    assert.ok(!files.some((f) => f.startsWith('package/dist/test/')), 'no compiled tests')
    const manifest = JSON.parse(run('tar', ['xzOf', tarball, 'package/package.json']).out) as { scripts: Record<string, string> }
    for (const script of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(manifest.scripts[script], undefined, `no ${script} script runs at install`)
  })

  it('npm install -g puts a working relight-sidecar on the PATH (help, snippet, check)', async () => {
    const install = npm(['install', '-g', '--prefix', join(tmp.dir, 'prefix'), tarball])
    assert.equal(install.code, 0, install.all)
    if (node !== process.execPath || process.versions.node.startsWith('24.')) {
      assert.doesNotMatch(install.all, /EBADENGINE/, 'no engine warning on Node 24')
    }
    assert.doesNotMatch(install.all, /install-scripts/, 'no install script to approve')
    const help = run('relight-sidecar', ['--help'], { env })
    assert.equal(help.code, 0, help.all)
    assert.match(help.out, /relight-sidecar serve --config FILE/)
    const snippet = run('relight-sidecar', ['snippet'], { env })
    assert.equal(snippet.code, 0, snippet.all)
    assert.equal(snippet.out, readFileSync(join(ROOT, 'caddy/relight.caddy'), 'utf8'))
    const version = run('sh', ['-c', 'head -1 "$(command -v relight-sidecar)"; node --version'], { env })
    assert.equal(version.out, `#!/usr/bin/env node\nv${run(node, ['--version']).out.trim().slice(1)}\n`, 'the command runs on the Node under test')
    const config = join(tmp.dir, 'relight.yaml')
    writeFileSync(
      config,
      `listen: 127.0.0.1:${await freePort()}\naccess_log: unix:${tmp.dir}/run/relight/access.sock\nproviders:\n  process:\n    apps:\n      - { name: a, hosts: [a.localhost], command: [node, ${APP}], port: ${await freePort()} }\n`,
    )
    const check = run('relight-sidecar', ['check', '--config', config], { env })
    assert.equal(check.code, 0, check.all)
    assert.match(check.out, /all checks passed/)
  })

  it('a built checkout runs after npm ci --omit=dev (no TypeScript needed)', () => {
    const checkout = join(tmp.dir, 'checkout')
    for (const f of ['package.json', 'package-lock.json', 'scripts', 'caddy', 'dist/sidecar']) cpSync(join(ROOT, f), join(checkout, f), { recursive: true })
    const ci = npm(['ci', '--omit=dev'], { cwd: checkout })
    assert.equal(ci.code, 0, ci.all)
    assert.ok(!existsSync(join(checkout, 'node_modules/typescript')), 'dev dependencies were omitted')
    const help = run(node, [join(checkout, 'dist/sidecar/main.js'), 'snippet'])
    assert.equal(help.code, 0, help.all)
    assert.match(help.out, /forward_auth/)
  })
})
