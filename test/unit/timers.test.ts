/**
 * core/timers.ts `withDeadline`: a time bound that survives garbage collection. On Node 20
 * (20.20.2 here) `AbortSignal.any([signal, AbortSignal.timeout(ms)])` written inline never fires
 * once a GC ran (nodejs/node#57736): 0 of 20 such signals aborted in the first test below when
 * `withDeadline` was built that way.
 */
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import v8 from 'node:v8'
import vm from 'node:vm'
import { withDeadline } from '../../sidecar/core/timers.js'

/** `gc()` without the --expose-gc command-line flag (the test runner's children lack it). */
function exposeGc(): () => void {
  v8.setFlagsFromString('--expose-gc')
  return vm.runInNewContext('gc') as () => void
}

/** Resolves when `signal` aborts; rejects after `ms` (so a missed abort fails instead of hanging). */
function aborted(signal: AbortSignal, ms: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return resolve(signal.reason)
    const timer = setTimeout(() => reject(new Error(`not aborted within ${ms} ms`)), ms)
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer)
        resolve(signal.reason)
      },
      { once: true },
    )
  })
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return sources(path)
    return path.endsWith('.ts') ? [path] : []
  })
}

describe('withDeadline', () => {
  it('is used instead of an inline AbortSignal.timeout inside AbortSignal.any anywhere in sidecar/', () => {
    const inline = /AbortSignal\.any\(\[[^\]]*AbortSignal\.timeout\(/
    const found = sources(join(ROOT, 'sidecar')).flatMap((file) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .flatMap((line, i) => (inline.test(line) && !line.trim().startsWith('*') ? [`${relative(ROOT, file)}:${i + 1}`] : [])),
    )
    assert.deepEqual(found, [], 'use withDeadline (core/timers.ts): nodejs/node#57736')
  })

  it('fires after ms even when garbage collection runs meanwhile (nodejs/node#57736)', async () => {
    const gc = exposeGc()
    const outers: AbortController[] = []
    const waits: Promise<unknown>[] = []
    for (let i = 0; i < 20; i++) {
      const outer = new AbortController()
      outers.push(outer)
      // Only the composite signal is kept (through its listener), as a caller awaiting an
      // operation does: nothing else holds the time bound.
      waits.push(aborted(withDeadline(outer.signal, 100).signal, 3000))
    }
    const collecting = setInterval(gc, 5)
    try {
      const reasons = await Promise.allSettled(waits)
      const fired = reasons.filter((r) => r.status === 'fulfilled').length
      assert.equal(fired, 20, `${fired} of 20 time bounds fired`)
      const first = reasons[0]
      assert.ok(first?.status === 'fulfilled' && first.value instanceof DOMException && first.value.name === 'TimeoutError', 'the default reason is a TimeoutError, like AbortSignal.timeout')
    } finally {
      clearInterval(collecting)
    }
    assert.equal(outers.length, 20)
  })

  it('follows its signals, uses the reason given, and clear() removes the bound', async () => {
    const a = new AbortController()
    const b = new AbortController()
    const either = withDeadline([a.signal, b.signal], 60_000)
    b.abort(new Error('b'))
    assert.equal(((await aborted(either.signal, 1000)) as Error).message, 'b')
    either.clear()

    const reasoned = withDeadline(new AbortController().signal, 20, () => new Error('too slow'))
    assert.equal(((await aborted(reasoned.signal, 1000)) as Error).message, 'too slow')

    const cleared = withDeadline(new AbortController().signal, 20)
    cleared.clear()
    // A timer of the same length set after the bound's fires after it (Node runs expired timers in
    // order), whatever the load: had clear() not removed the bound, it would have aborted by then.
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(cleared.signal.aborted, false, 'cleared: no abort after ms')
  })
})
