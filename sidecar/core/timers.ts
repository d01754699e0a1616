/**
 * Wait `ms`, or less if `signal` aborts first. It always resolves: a caller in a loop checks
 * `signal.aborted` (or calls `signal.throwIfAborted()`) afterwards.
 */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
