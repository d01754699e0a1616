/**
 * What the status page shows, in a real headless Chromium at 1280 and 420 px: the summary line,
 * names rather than 64-hex ids, full hosts as links, the idle countdown, the last events, a
 * crash-looping process app shown as restart back-off (not "asleep"), and only the button its
 * state allows; nothing the strict CSP refuses, nothing wider than the phone's screen.
 * Real process apps (one exits at once, so its restarts back off) beside an in-memory provider
 * named `docker` whose backend has a container's 64-hex id (and a startup_grace that holds it awake). Screenshots: .tmp/screenshots/
 * (or RELIGHT_SHOTS).
 */
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { parseConfig } from '../../sidecar/config/load.js'
import { createProviders } from '../../sidecar/providers/index.js'
import { MemoryProvider } from '../fakes/memory-provider.js'
import { chromiumSkip, CHROMIUM } from '../helpers/chromium.js'
import { freePort, tempDir } from '../helpers/net.js'
import { startTestSidecar, testLogger, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'
import { testSecret } from '../helpers/secret.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const TOKEN = testSecret()
const SHOTS = resolve(process.env.RELIGHT_SHOTS ?? '.tmp/screenshots')
const CONTAINER_ID = 'f3b1c9d2e4a5968778695a4b3c2d1e0ff3b1c9d2e4a5968778695a4b3c2d1e0f'
const skip = chromiumSkip()
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']
const TODAY = DAYS[new Date().getUTCDay()] as string
const TOMORROW = DAYS[(new Date().getUTCDay() + 1) % 7] as string
/** The little of the DOM the page functions below use (tsconfig has no DOM lib). */
type Doc = { document: { querySelector(s: string): { innerText: string; getAttribute(n: string): string | null } | null; querySelectorAll(s: string): Iterable<{ getAttribute(n: string): string | null }> } }

describe('status page: what it shows, at 1280 and 420 px', { skip }, () => {
  let sc: TestSidecar
  let browser: Browser
  const tmp = tempDir('relight-view-')

  /** Before any backend exists: every time the page shows is after this. */
  let started = 0

  before(async () => {
    started = Date.now()
    mkdirSync(SHOTS, { recursive: true })
    const app = async (name: string, hosts: string, extra = '', more = '') =>
      `      - { name: ${name}, hosts: [${hosts}], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: ${name}${extra} }, port: ${await freePort()}, stdout: "null", grace_period: 2s${more} }\n`
    const yaml =
      `admin: { token: ${TOKEN} }\nstate_dir: ${tmp.dir}/state\nbase_domains: [apps.example.test]\nmin_idle_timeout: 1s\ndefaults: { idle_timeout: 10m, wake_timeout: 10s }\nproviders:\n  process:\n    apps:\n` +
      (await app('hello', 'hello, hello.example.org')) +
      (await app('blog', 'blog')) +
      (await app('crashy', 'crashy', ', EXIT_CODE: "3"')) +
      // inside a schedule window all of today (UTC): the page says so, not an idle countdown or a Wake button
      (await app('checked', 'checked', '', `, awake_during: "${TODAY} 00:00-24:00 UTC", fast_lane: on`)) +
      (await app('night', 'night', '', `, asleep_during: "${TODAY} 00:00-24:00 UTC"`))
    const processes = createProviders(parseConfig(`listen: 127.0.0.1:0\n${yaml}`, 'test'), testLogger(), { baseDir: tmp.dir })
    const docker = new MemoryProvider([{ id: CONTAINER_ID, name: 'shop-web-1', hosts: ['shop.apps.example.test'], state: 'running', upstreams: ['127.0.0.1:9'], settings: { startup_grace: 3_600_000 } }], { kind: 'docker' })
    sc = await startTestSidecar(yaml, { providers: [...processes, docker] })
    // hello awake, crashy crash-looping, blog asleep
    assert.equal((await sc.sidecar.app.inject({ url: '/_relight/auth', headers: { host: 'hello.apps.example.test' } })).statusCode, 200)
    // relight_fast's forward_auth call: snippet 4, the shipped one
    const fast = { 'x-relight-snippet': '4', 'x-relight-request': 'GET /', 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/' }
    assert.equal((await sc.sidecar.app.inject({ url: '/_relight/auth', headers: { host: 'checked.apps.example.test', ...fast } })).statusCode, 200)
    const crash = await sc.sidecar.app.inject({ url: '/_relight/auth', headers: { host: 'crashy.apps.example.test' } })
    assert.ok(crash.statusCode >= 500, `crashy fails to wake (${crash.statusCode})`)
    await until(async () => {
      const again = await sc.sidecar.app.inject({ url: '/_relight/auth', headers: { host: 'crashy.apps.example.test' } })
      return again.headers['x-relight-reply'] === 'RELIGHT_ERR_RESTART_BACKOFF'
    }, 'crashy to be in restart back-off', 60_000, 200)
    // blog: woken, a sleep refused (a request in flight), then put to sleep by the operator;
    // night: a wake refused by its asleep_during window. The page shows one line for each, with its time.
    const bearer = { authorization: `Bearer ${TOKEN}` }
    assert.equal((await sc.sidecar.app.inject({ url: '/_relight/auth', headers: { host: 'blog.apps.example.test' } })).statusCode, 200)
    const blog = sc.sidecar.registry.get('process:blog')!
    blog.started(true)
    assert.equal((await sc.sidecar.app.inject({ method: 'POST', url: '/_relight/admin/backends/process:blog/sleep', headers: bearer })).statusCode, 409)
    blog.finished()
    assert.equal((await sc.sidecar.app.inject({ method: 'POST', url: '/_relight/admin/backends/process:blog/sleep', headers: bearer })).statusCode, 200)
    assert.equal((await sc.sidecar.app.inject({ url: '/_relight/auth', headers: { host: 'night.apps.example.test' } })).statusCode, 503)
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: join(tmp.dir, 'profile'),
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check'],
    })
  })
  after(async () => {
    await browser?.close()
    await sc?.close()
    tmp.remove()
  })

  async function open(width: number): Promise<{ page: Page; refused: string[] }> {
    const page = await browser.newPage()
    const refused: string[] = []
    page.on('console', (m) => {
      if (/Content Security Policy|Refused/i.test(m.text())) refused.push(m.text())
    })
    await page.setViewport({ width, height: 900 })
    await page.goto(`${sc.url}/_relight/status`)
    if (await page.$('form.login')) {
      await page.type('input[name=token]', TOKEN)
      await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')])
    }
    await page.waitForSelector('#live.on')
    await page.waitForSelector('#summary li')
    await page.waitForSelector('#events li[data-type]')
    return { page, refused }
  }

  /**
   * Read in one call: the page replaces its table every 15 s and on events, so a handle from
   * page.$() may be a detached cell by the time it is read (its innerText then loses the line breaks).
   */
  async function text(page: Page, selector: string): Promise<string> {
    const t = await page.evaluate((s: string) => (globalThis as unknown as Doc).document.querySelector(s)?.innerText, selector)
    assert.equal(typeof t, 'string', `${selector} is on the page`)
    return t as string
  }
  async function attr(page: Page, selector: string, name: string): Promise<string | null> {
    const a = await page.evaluate((s: string, n: string) => (globalThis as unknown as Doc).document.querySelector(s)?.getAttribute(n), selector, name)
    assert.notEqual(a, undefined, `${selector} is on the page`)
    return a ?? null
  }
  /** Minutes the test has run, rounded up: bounds a countdown the page shows. */
  const minutesSinceStart = () => Math.ceil((Date.now() - started) / 60_000)
  /** "N s" or "N min" (page's span()), as seconds. */
  const seconds = (n: string, unit: string) => Number(n) * (unit === 'min' ? 60 : 1)

  it('at 1280 px: summary, names, host links, countdown, back-off, matching buttons, events', async () => {
    const { page, refused } = await open(1280)
    const summary = await text(page, '#summary')
    for (const part of ['6 backends', '3 awake', 'all 2 providers up', 'access log disconnected', 'snippet v4', 'v0.1.0', 'up ']) assert.ok(summary.includes(part), `summary has "${part}": ${summary}`)
    const snippetClass = await page.$$eval('#summary li', (lis) => lis.find((li) => li.textContent === 'snippet v4')?.className)
    assert.equal(snippetClass, 'ok', 'the shipped snippet (relight_fast, version 4) is current, not marked bad')
    assert.equal(await text(page, 'tr[data-key="process:checked"] td[data-idle]'), `awake until ${TOMORROW} 00:00 UTC (awake_during)`)
    assert.equal(await text(page, 'tr[data-key="process:checked"] [data-lane-off]'), 'fast lane off: fast_lane_dir is not set')
    assert.match(await text(page, 'tr[data-key="process:night"]'), new RegExp(`asleep by schedule until ${TOMORROW} 00:00 UTC \\(asleep_during\\)`))
    assert.equal(await page.$('tr[data-key="process:night"] button'), null, 'no Wake button while asleep_during refuses wakes')

    const shop = await text(page, `tr[data-key="docker:${CONTAINER_ID}"]`)
    assert.match(shop, /shop-web-1/)
    assert.ok(!shop.includes(CONTAINER_ID), 'the 64-hex id is not shown whole')
    assert.equal(await attr(page, `tr[data-key="docker:${CONTAINER_ID}"] .key`, 'title'), `docker:${CONTAINER_ID}`, 'the full key is in the tooltip')
    // found running with startup_grace 1h: held awake past its idle_timeout, and the page says why
    // (the minutes left: 60 less the test's time so far, give or take the page's rounding)
    const grace = await text(page, `tr[data-key="docker:${CONTAINER_ID}"] td[data-idle]`)
    const graceMin = Number(/^startup grace: awake (\d+) min more$/.exec(grace)?.[1])
    assert.ok(graceMin <= 60 && graceMin >= 60 - minutesSinceStart() - 1, grace)

    const links = await page.$$eval('tr[data-key="process:hello"] .hosts a', (as) => as.map((a) => a.getAttribute('href')))
    assert.deepEqual(links, ['https://hello.apps.example.test/', 'https://hello.example.org/'])
    const idle = await text(page, 'tr[data-key="process:hello"] td[data-idle]')
    const idleMin = Number(/^asleep in (\d+) min$/.exec(idle)?.[1]) // idle_timeout 10m from its wake
    assert.ok(idleMin <= 10 && idleMin >= 10 - minutesSinceStart() - 1, idle)

    assert.ok(await page.$('tr[data-key="process:crashy"] .state[data-backoff]'), 'crashy shows restart back-off')
    assert.match(await text(page, 'tr[data-key="process:crashy"]'), /restart back-off[\s\S]*next start in/)
    assert.equal(await page.$('tr[data-key="process:crashy"] button'), null, 'no button while it restarts by itself')

    // Last sleep: when and why, and the one latest refusal with its time (not a pile of old lines)
    // ("N s ago" turns into "N min ago" after a minute; the instants are in the tooltips)
    const blogSleep = await text(page, 'tr[data-key="process:blog"] td[data-last-sleep]')
    const blogAgo = /^(\d+) (s|min) ago · operator\nsleep refused (\d+) (s|min) ago: inflight: 1$/.exec(blogSleep)
    assert.ok(blogAgo, blogSleep)
    assert.ok(seconds(blogAgo[3]!, blogAgo[4]!) >= seconds(blogAgo[1]!, blogAgo[2]!), `the refusal came before the sleep: ${blogSleep}`)
    assert.ok(seconds(blogAgo[3]!, blogAgo[4]!) <= minutesSinceStart() * 60, `within the test's time: ${blogSleep}`)
    const times = await page.evaluate((s: string) => [...(globalThis as unknown as Doc).document.querySelectorAll(s)].map((t) => t.getAttribute('datetime')), 'tr[data-key="process:blog"] td[data-last-sleep] time')
    assert.equal(times.length, 2)
    const [sleptAt, refusedAt] = times.map((t) => Date.parse(t ?? ''))
    assert.ok(started <= refusedAt! && refusedAt! <= sleptAt! && sleptAt! <= Date.now(), `refused, then slept, during this test: ${times.join(', ')}`)
    const nightSleep = await text(page, 'tr[data-key="process:night"] td[data-last-sleep]')
    assert.match(nightSleep, /^–\nwake refused \d+ (s|min) ago: night is asleep by schedule \(asleep_during: \w{3} 00:00-24:00…$/, nightSleep)
    assert.equal((await page.$$('tr[data-key="process:night"] [data-refused]')).length, 1)
    assert.ok((await attr(page, 'tr[data-key="process:night"] [data-refused] span[title]', 'title'))?.includes(`asleep_during: ${TODAY} 00:00-24:00 UTC`), 'the whole reason in the tooltip')

    const buttons = async (key: string) => page.$$eval(`tr[data-key="${key}"] button`, (bs) => bs.map((b) => b.getAttribute('data-op')))
    assert.deepEqual(await buttons('process:hello'), ['sleep'])
    assert.deepEqual(await buttons('process:blog'), ['wake'])

    const events = await page.$$eval('#events li[data-type]', (lis) => lis.map((li) => li.getAttribute('data-type')))
    assert.ok(events.includes('wake.ready') && events.includes('wake.failed'), `events: ${events.join(', ')}`)
    assert.ok(events.length <= 50)
    await page.screenshot({ path: join(SHOTS, 'status-1280.png'), fullPage: true })
    assert.deepEqual(refused, [], 'nothing refused by the CSP')
    await page.close()
  })

  it('at 420 px: one card per backend, nothing wider than the screen', async () => {
    const { page, refused } = await open(420)
    assert.equal(await page.evaluate('document.documentElement.scrollWidth'), 420, 'no horizontal scrolling')
    assert.equal(await page.evaluate('getComputedStyle(document.querySelector("thead")).display'), 'none')
    await page.screenshot({ path: join(SHOTS, 'status-420.png'), fullPage: true })
    assert.deepEqual(refused, [])
    await page.close()
  })
})
