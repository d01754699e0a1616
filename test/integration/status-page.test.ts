/**
 * The status page and the waiting pages in a real headless Chromium (Debian's, driven by
 * puppeteer-core), with a real Caddy and real child processes:
 * - log in through the form; the page shows a backend asleep; a request through Caddy wakes it
 *   and the page shows it running without a reload; the Sleep button puts it back to sleep;
 * - the built-in waiting page reloads itself with JavaScript disabled until the app answers;
 * - an operator's waiting_page_template is served with {{host}} and {{retry_after}} filled in.
 * Screenshots go to .tmp/screenshots/ (look at them when changing the pages).
 */
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { request } from 'undici'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { chromiumSkip, CHROMIUM } from '../helpers/chromium.js'
import { freePort, tempDir } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'
import { testSecret } from '../helpers/secret.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const TOKEN = testSecret()
const SHOTS = resolve('.tmp/screenshots')
const skip = caddySkip() ?? chromiumSkip()

describe('status page and waiting pages in Chromium', { skip }, () => {
  let sc: TestSidecar
  let caddy: RunningCaddy
  let browser: Browser
  const profile = tempDir('relight-chromium-')

  before(async () => {
    mkdirSync(SHOTS, { recursive: true })
    const template = join(profile.dir, 'waiting.html')
    writeFileSync(
      template,
      '<!doctype html><html><head><meta http-equiv="refresh" content="{{retry_after}}"><title>Themed</title></head>' +
        '<body style="font-family:sans-serif;background:#123;color:#fff;padding:3rem"><h1 id="themed">Warming up {{host}}</h1><p>Back in {{ retry_after }} s.</p></body></html>',
    )
    const app = (name: string, port: number, extra = '') =>
      `      - { name: ${name}, hosts: [${name}.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: ${name}${extra ? ', LISTEN_DELAY_MS: "2500"' : ''} }, port: ${port}, stdout: "null", grace_period: 2s${extra} }\n`
    sc = await startTestSidecar(
      `admin: { token: ${TOKEN} }\nmin_idle_timeout: 1s\ndefaults: { idle_timeout: 1h, wake_timeout: 20s, strategy: waiting_page, waiting_page_after: 100ms }\nproviders:\n  process:\n    apps:\n` +
        app('hello', await freePort()) +
        app('slow', await freePort(), ', readiness: "http:/"') +
        app('themed', await freePort(), `, readiness: "http:/", waiting_page_template: ${template}`),
    )
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: join(profile.dir, 'profile'),
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check'],
    })
  })
  after(async () => {
    await browser?.close()
    await caddy?.close()
    await sc?.close()
    profile.remove()
  })

  const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true })

  it('logs in, shows a backend asleep, and shows it running after a request through Caddy, without a reload', async () => {
    const page = await browser.newPage()
    await page.setViewport({ width: 1280, height: 720 })
    await page.goto(`${sc.url}/_relight/status`)
    assert.ok(await page.$('form.login input[type=password][name=token]'), 'the login form')
    await shot(page, '1-login')
    await page.type('input[name=token]', TOKEN)
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')])
    assert.equal(page.url(), `${sc.url}/_relight/status`, 'the token is not in the URL')
    const cookies = await browser.cookies()
    const session = cookies.find((c) => c.name === 'relight_session')
    assert.ok(session?.httpOnly, 'HttpOnly session cookie')
    assert.equal(session?.sameSite, 'Strict')
    assert.equal(await page.evaluate('document.cookie'), '', 'scripts cannot read it')

    await page.waitForSelector('tr[data-key="process:hello"] .state[data-phase="asleep"]')
    await page.waitForSelector('#live.on')
    await shot(page, '2-asleep')
    // A marker that a reload would wipe.
    await page.evaluate('window.notReloaded = true')

    const res = await request(`${caddy.url}/`, { headers: { host: 'hello.localhost' } })
    assert.equal(res.statusCode, 200)
    await res.body.dump()
    await page.waitForSelector('tr[data-key="process:hello"] .state[data-phase="running"]', { timeout: 15_000 })
    assert.equal(await page.evaluate('window.notReloaded'), true, 'updated without a reload')
    await until(async () => (await page.$eval('tr[data-key="process:hello"]', (e) => e.textContent ?? '')).includes('s ago'), 'the last wake time to show')
    await shot(page, '3-running')

    // The Sleep button: a cookie + CSRF POST from the page itself.
    // The live page re-renders rows as events arrive: a handle taken first can be detached by the
    // time it is clicked ("Node is detached from document"), so click through a locator, which
    // finds the button again until the click lands.
    await page.locator('tr[data-key="process:hello"] button[data-op="sleep"]').setTimeout(15_000).click()
    await page.waitForSelector('tr[data-key="process:hello"] .state[data-phase="asleep"]', { timeout: 15_000 })
    await shot(page, '4-slept-by-button')
    await page.close()
  })

  it('serves the built-in waiting page to a browser without JavaScript; it reloads itself until the app answers', async () => {
    const page = await browser.newPage()
    await page.setJavaScriptEnabled(false)
    await page.setViewport({ width: 900, height: 600 })
    const statuses: number[] = []
    let appAnswered: () => void = () => undefined
    const answered = new Promise<void>((r) => (appAnswered = r))
    page.on('response', (r) => {
      if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) {
        statuses.push(r.status())
        if (r.status() === 200) appAnswered()
      }
    })
    const first = await page.goto(`http://slow.localhost:${caddy.port}/`)
    assert.equal(first?.status(), 503)
    assert.equal(first?.headers()['retry-after'], '2')
    const waiting = (await first?.text()) ?? ''
    assert.match(waiting, /Starting slow\.localhost/)
    assert.match(waiting, /<meta http-equiv="refresh" content="2">/)
    assert.doesNotMatch(waiting, /<script/i, 'the built-in page needs no JavaScript')
    await shot(page, '5-waiting-page-no-js')
    await answered
    // The page may be mid-navigation: a failed read is retried.
    await until(async () => (await page.content().catch(() => '')).includes('slow pid'), 'the app page after the refresh', 10_000, 50)
    assert.ok(statuses[0] === 503 && statuses.at(-1) === 200, `navigations: ${statuses.join(', ')}`)
    await shot(page, '6-app-after-waiting')
    await page.close()
  })

  it('serves an operator waiting_page_template with {{host}} and {{retry_after}} filled in', async () => {
    const page = await browser.newPage()
    await page.setViewport({ width: 900, height: 600 })
    const res = await page.goto(`http://themed.localhost:${caddy.port}/`)
    assert.equal(res?.status(), 503)
    const heading = await page.$eval('#themed', (e) => e.textContent)
    assert.equal(heading, 'Warming up themed.localhost')
    assert.match(await page.$eval('p', (e) => e.textContent ?? ''), /^Back in 2 s\.$/)
    await shot(page, '7-themed-waiting-page')
    await page.waitForFunction('document.body.textContent.includes("themed pid")', { timeout: 15_000 })
    await page.close()
  })
})
