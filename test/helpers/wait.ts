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
