import { readFileSync } from 'node:fs'

/**
 * Resolve with `condition()`'s value once it is truthy, checking every `interval` ms; reject after
 * `timeout` (30 s by default: a wait that succeeds returns as soon as it can, and on a busy 2-core
 * CI machine starting a Node child alone can take several seconds).
 */
export async function until<T>(condition: () => T | Promise<T>, what: string, timeout = 30_000, interval = 10): Promise<Exclude<T, undefined | null | false | 0 | ''>> {
  const deadline = Date.now() + timeout
  for (;;) {
    const value = await condition()
    if (value) return value as Exclude<T, undefined | null | false | 0 | ''>
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, interval))
  }
}

/**
 * Let everything already set off run to its end, for a test about to assert that something did
 * NOT happen. Promise callbacks and process.nextTick callbacks all run before the next immediate,
 * so each turn drains them, including those they queue; the turns after the first cover code that
 * itself hops through setImmediate (light-my-request's null socket does). For code
 * whose path holds no timer and no I/O (the fakes here, app.inject()): afterwards nothing more
 * can happen without the test's next step, on any machine load, which a fixed sleep never says.
 * A path through a timer or a socket needs its own event (an injected clock, the promise, a count).
 */
export async function drain(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r))
}

export function pidAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  // a zombie still answers kill(0): read its state
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))
  } catch {
    return false
  }
}

/** Linux process state letter: R, S, T (stopped), Z… */
export function pidState(pid: number): string | undefined {
  try {
    return /^State:\s+(\w)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
  } catch {
    return undefined
  }
}
