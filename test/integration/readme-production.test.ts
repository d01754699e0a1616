/**
 * "Production on one host", as the README writes it: its relight.yaml, its Caddyfile (global
 * on_demand_tls ask, the site block), its Caddy block for the status page and its Prometheus
 * files are taken from the README text and only moved (ports, directories, `tls internal` for a
 * local CA). Then, with a root sidecar (`serve`), Caddy as the `caddy` user and Debian's
 * Prometheus:
 *   - a name no backend serves gets no certificate; hello.apps.example.com gets one and is
 *     served through the unix sockets;
 *   - ops_listen serves ask, metrics and the status page, never /_relight/auth;
 *   - Prometheus scrapes it with the README's config and answers "which backends are awake";
 *   - `check` passes against the running sidecar, shows its live view and disturbs nothing.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { testSecret } from '../helpers/secret.js'
import { caddySkip, certificates, handshake, type RunningCaddy, startCaddy, stopChild } from '../helpers/caddy.js'
import { freePort, tempDir } from '../helpers/net.js'
import { prometheusSkip } from '../helpers/prometheus.js'
import { MAIN, type SidecarProcess, startSidecarProcess } from '../helpers/sidecar-process.js'
import { until } from '../helpers/wait.js'

const README = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8')
const TOKEN = testSecret()

function fenced(lang: string, first: string | RegExp): string {
  for (const m of README.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))) {
    const body = m[1] as string
    if (typeof first === 'string' ? body.startsWith(first) : first.test(body)) return body
  }
  throw new Error(`README has no \`\`\`${lang} block starting with ${String(first)}`)
}
const named = (lang: string, name: string): string => {
  const m = new RegExp('```' + lang + ' ' + name.replace('.', '\\.') + '\\n([\\s\\S]*?)```').exec(README)
  assert.ok(m?.[1], `README has a \`\`\`${lang} ${name} block`)
  return m[1]
}

function usersSkip(): string | undefined {
  const reason = caddySkip() ?? prometheusSkip()
  if (reason) return reason
  if (process.getuid?.() === 0 && spawnSync('id', ['caddy']).status === 0 && spawnSync('id', ['www-data']).status === 0) return undefined
  const why = 'needs root and the caddy and www-data users (Debian) to run the README as written'
  if (process.env.CI) throw new Error(why)
  process.stderr.write(`# ${why}; skipping\n`)
  return why
}


/** GET https://host:port/path through Caddy on loopback (SNI and Host = host). */
function httpsGet(port: number, host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, servername: host, headers: { host }, rejectUnauthorized: false, timeout: 30_000 }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => (body += d.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('timeout', () => req.destroy(new Error(`GET https://${host}${path} timed out`)))
    req.on('error', reject)
    req.end()
  })
}


describe('README production recipe, as written', { skip: usersSkip() }, () => {
  const tmp = tempDir('relight-prod-')
  chmodSync(tmp.dir, 0o755)
  const run = join(tmp.dir, 'run/relight')
  let ops = ''
  let sidecar: SidecarProcess | undefined
  let caddy: RunningCaddy | undefined
  let prometheus: ChildProcess | undefined
  let promOutput = ''
  let configFile = ''
  let tokenFile = ''
  const moveRelight = (text: string) => text.replaceAll('/run/relight', run).replaceAll('127.0.0.1:9124', ops)

  before(async () => {
    ops = `127.0.0.1:${await freePort()}`
    const appPort = await freePort()
    // the app the config names, in its (moved) directory, readable by www-data
    const srv = join(tmp.dir, 'srv/hello')
    mkdirSync(srv, { recursive: true, mode: 0o755 })
    chmodSync(join(tmp.dir, 'srv'), 0o755)
    writeFileSync(join(srv, 'server.js'), `require('http').createServer((q, s) => s.end('hello from ' + process.getuid() + '\\n')).listen(Number(process.env.PORT), '127.0.0.1')\n`, { mode: 0o644 })

    // the admin token file, as Configure makes it (0600)
    tokenFile = join(tmp.dir, 'admin-token')
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
    const config = moveRelight(fenced('yaml', '# /etc/relight/relight.yaml'))
      .replaceAll('/srv/hello', srv)
      .replace('port: 3001', `port: ${appPort}`)
      .replaceAll('/etc/relight/admin-token', tokenFile)
    assert.notEqual(config, fenced('yaml', '# /etc/relight/relight.yaml'))
    configFile = join(tmp.dir, 'relight.yaml')
    writeFileSync(configFile, config)
    process.env.RELIGHT_ADMIN_TOKEN = TOKEN // in case the README's config reads it from the environment
    sidecar = await startSidecarProcess(configFile)
    await sidecar.waitFor((l) => l.msg === 'relight-sidecar listening', 'the sidecar to listen', 30_000)

    // The Caddyfile: its global options go into the helper's global block (which adds storage
    // and turns off what a test must not do), its site blocks follow the snippet import.
    const caddyfile = fenced('caddyfile', '# /etc/caddy/Caddyfile')
    const global = /^\{\n([\s\S]*?)\n\}\n/m.exec(caddyfile.replace(/^#.*\n/, ''))?.[1]
    assert.ok(global?.includes('on_demand_tls'), 'the Caddyfile has a global on_demand_tls block')
    const site = caddyfile.slice(caddyfile.indexOf('*.apps.example.com {'))
    assert.ok(caddyfile.includes('import relight.caddy'), 'the Caddyfile imports the snippet')
    const opsBlock = fenced('caddyfile', 'relight.example.com {')
    caddy = await startCaddy({
      sidecar: '',
      user: 'caddy',
      tls: true,
      // The port moves through https_port, not the site addresses: Caddy picks a site's logger by
      // the Host header, and a site address with a port would not log requests whose Host leaves
      // the port out (the README says so).
      global: (port) => `\tskip_install_trust\n\tdefault_bind 127.0.0.1\n\thttps_port ${port}\n${moveRelight(global as string)}\n`,
      sites: () =>
        moveRelight(site).replace('\ttls {\n\t\ton_demand', '\ttls internal {\n\t\ton_demand') +
        moveRelight(opsBlock).replace('relight.example.com {', `relight.example.com {\n\ttls internal`),
    })
  })

  after(async () => {
    if (prometheus) await stopChild(prometheus)
    await caddy?.close()
    if (sidecar) {
      sidecar.child.kill('SIGTERM')
      await sidecar.exited
    }
    delete process.env.RELIGHT_ADMIN_TOKEN
    tmp.remove()
  })

  it('on-demand TLS: a name no backend serves gets no certificate; a served name gets one and is served', async () => {
    const port = (caddy as RunningCaddy).port
    assert.equal(await handshake(port, 'random123.apps.example.com'), false, 'no certificate for a name no backend serves')
    // (relight.example.com, the status page's site, has its own certificate from the start)
    const onDemand = () => certificates((caddy as RunningCaddy).storage).filter((c) => c.endsWith('.apps.example.com.crt'))
    assert.deepEqual(onDemand(), [])
    assert.equal(await handshake(port, 'hello.apps.example.com'), true)
    assert.deepEqual(onDemand(), ['hello.apps.example.com.crt'])
    const res = await httpsGet(port, 'hello.apps.example.com', '/')
    assert.equal(res.status, 200, res.body)
    assert.equal(res.body, `hello from ${Number(spawnSync('id', ['-u', 'www-data'], { encoding: 'utf8' }).stdout)}\n`, 'the app runs as its user:')
  })

  it('ops_listen: ask, metrics and the status page; never /_relight/auth', async () => {
    const base = `http://${ops}`
    assert.equal((await request(`${base}/_relight/ask?domain=hello.apps.example.com`)).statusCode, 200)
    assert.equal((await request(`${base}/_relight/ask?domain=random123.apps.example.com`)).statusCode, 404)
    const auth = await request(`${base}/_relight/auth`, { headers: { host: 'hello.apps.example.com' } })
    assert.equal(auth.statusCode, 404)
    assert.equal(auth.headers['x-relight-reply'], 'RELIGHT_ERR_NOT_FOUND')
    assert.equal(auth.headers['x-relight-upstream'], undefined)
    await auth.body.dump()
    const metrics = await request(`${base}/_relight/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
    assert.equal(metrics.statusCode, 200)
    assert.match(await metrics.body.text(), /^relight_backend_awake\{provider="process",backend="hello"\} 1$/m)
    const page = await request(`${base}/_relight/status`)
    assert.equal(page.statusCode, 200)
    assert.match(await page.body.text(), /name="token"/, 'the login form')
    const login = await request(`${base}/_relight/status/login`, { method: 'POST', body: `token=${TOKEN}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } })
    assert.equal(login.statusCode, 303)
    await login.body.dump()
    const cookie = String(login.headers['set-cookie']).split(';')[0] as string
    const status = await request(`${base}/_relight/status`, { headers: { cookie } })
    assert.equal(status.statusCode, 200)
    assert.match(String(status.headers['content-security-policy']), /default-src 'none'/)
    assert.match(await status.body.text(), /relight-sidecar status/)
  })

  it('the README Caddy block for the status page proxies the page and the admin API, and nothing else', async () => {
    const port = (caddy as RunningCaddy).port
    const page = await httpsGet(port, 'relight.example.com', '/_relight/status')
    assert.equal(page.status, 200)
    assert.match(page.body, /name="token"/)
    assert.equal((await httpsGet(port, 'relight.example.com', '/_relight/admin/backends')).status, 401, 'the admin API, which wants the token')
    for (const path of ['/', '/_relight/metrics', '/_relight/auth', '/_relight/healthz']) {
      assert.equal((await httpsGet(port, 'relight.example.com', path)).status, 404, path)
    }
  })

  it("Prometheus with the README's files scrapes ops_listen and says which backends are awake", async () => {
    const dir = join(tmp.dir, 'prometheus')
    mkdirSync(dir)
    const moved = (text: string) => text.replaceAll('/etc/prometheus', dir).replaceAll('127.0.0.1:9124', ops).replaceAll('/etc/relight/admin-token', tokenFile)
    writeFileSync(join(dir, 'prometheus.yml'), moved(named('yaml', 'prometheus.yml')))
    writeFileSync(join(dir, 'relight-alerts.yml'), named('yaml', 'relight-alerts.yml'))
    const setup = spawnSync('sh', ['-e', '-c', moved(named('sh', 'prometheus-setup'))], { encoding: 'utf8', env: { ...process.env, RELIGHT_ADMIN_TOKEN: TOKEN } })
    assert.equal(setup.status, 0, setup.stdout + setup.stderr)
    const promPort = await freePort()
    const url = `http://127.0.0.1:${promPort}`
    prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: dir,
    })
    prometheus.stdout?.on('data', (d: Buffer) => (promOutput += d.toString()))
    prometheus.stderr?.on('data', (d: Buffer) => (promOutput += d.toString()))
    const query = async (q: string) => {
      const res = await request(`${url}/api/v1/query?query=${encodeURIComponent(q)}`)
      return ((await res.body.json()) as { data?: { result: { metric: Record<string, string> }[] } }).data?.result ?? []
    }
    // the README's scrape_interval is 15s: the first scrape comes within one interval
    const awake = await until(
      async () => {
        if (prometheus?.exitCode !== null) throw new Error(`prometheus exited:\n${promOutput}`)
        const result = await query('relight_backend_awake == 1').catch(() => [])
        return result.length > 0 ? result : false
      },
      'Prometheus to scrape relight_backend_awake',
      60_000,
      250,
    )
    assert.ok(awake)
    assert.deepEqual(awake.map((r) => [r.metric.backend, r.metric.provider]), [['hello', 'process']])
    const rules = await request(`${url}/api/v1/rules`)
    const groups = ((await rules.body.json()) as { data: { groups: { name: string }[] } }).data.groups
    assert.deepEqual(groups.map((g) => g.name), ['relight'], 'the alert rules are loaded')
  })

  it('check passes against the running sidecar, shows its live view and disturbs nothing', async () => {
    // Caddy's access-log connection has proved itself: the request of the first test came back in
    // its log with its ticket
    const health = (await (await request(`http://${ops}/_relight/healthz`)).body.json()) as { access_log: string }
    assert.equal(health.access_log, 'connected')
    const before = (sidecar as SidecarProcess).lines().length
    const check = spawnSync(process.execPath, [MAIN, 'check', '--config', configFile], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, RELIGHT_ADMIN_TOKEN: TOKEN } })
    assert.equal(check.status, 0, check.stdout + check.stderr)
    assert.match(check.stdout, new RegExp(`running sidecar: pid ${(sidecar as SidecarProcess).pid}\\b`))
    assert.match(check.stdout, /live process: up, 1 backend\(s\), 1 awake/)
    assert.match(check.stdout, /live access_log: Caddy's access log is connected/)
    assert.match(check.stdout, /live snippet: Caddy's forward_auth calls come from snippet version 3/)
    assert.doesNotMatch(check.stdout, /in use/)
    const logged = (sidecar as SidecarProcess).lines().slice(before)
    assert.deepEqual(logged.filter((l) => /access.log|connection/i.test(String(l.msg))), [], 'the sidecar logged no connection of check')
  })
})
