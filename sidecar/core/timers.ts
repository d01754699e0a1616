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

/**
 * Follow `promise`, but reject with the signal's reason as soon as it aborts. The operation
 * itself goes on (and keeps whatever it holds, e.g. a queue slot) until it settles.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}

/** A signal bounded in time (see `withDeadline`); `clear()` once the operation it bounds is over. */
export interface Deadline {
  readonly signal: AbortSignal
  clear(): void
}

/**
 * A signal that aborts when any of `signals` does, or after `ms` with `reason()` (by default
 * AbortSignal.timeout's reason, a DOMException named TimeoutError), whichever comes first.
 *
 * Use it instead of `AbortSignal.any([signal, AbortSignal.timeout(ms)])` written inline: on
 * Node 20 a timeout signal whose only holder is an `AbortSignal.any` composite may be garbage
 * collected before it fires (nodejs/node#57736), and the bound silently disappears (an engine
 * that froze then holds the operation for ever). Here the timer holds its own controller until
 * it fires or `clear()` is called. Like AbortSignal.timeout's, the timer does not keep the
 * process alive.
 */
export function withDeadline(signals: AbortSignal | readonly AbortSignal[], ms: number, reason?: () => unknown): Deadline {
  const bound = new AbortController()
  const timer = setTimeout(() => bound.abort(reason !== undefined ? reason() : new DOMException('The operation was aborted due to timeout', 'TimeoutError')), ms)
  timer.unref()
  const sources = Array.isArray(signals) ? (signals as readonly AbortSignal[]) : [signals as AbortSignal]
  return { signal: AbortSignal.any([...sources, bound.signal]), clear: () => clearTimeout(timer) }
}
