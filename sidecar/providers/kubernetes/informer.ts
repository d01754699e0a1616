/**
 * List, then watch from the list's resourceVersion; resume from the last seen resourceVersion
 * when the server ends a watch normally (it does every few minutes); list again when the server
 * answers 410 Gone (the resourceVersion is too old) or after any failure (what happened meanwhile
 * is unknown). Runs until its signal aborts, with backoff between failures (CLUSTER_VIEW_BACKOFF:
 * 200 ms doubling to 2 s, reset as soon as a watch opens). `connected(false)` on the first
 * failure, `connected(true)` once a list was taken and its watch opened.
 */
import type { Logger } from 'pino'
import { isRelightError } from '../../core/errors.js'
import { CLUSTER_VIEW_BACKOFF, Reconnect } from '../kit/reconnect.js'
import type { KubeClient, KubeStatus, Query, WatchEvent } from './client.js'

interface Listed<T> {
  metadata: { resourceVersion?: string }
  items: T[]
}

interface HasMeta {
  metadata: { resourceVersion?: string }
}

export interface InformerHandlers<T> {
  /** A full list: the truth for this collection (at start and after each relist). */
  relisted(items: T[]): void
  changed(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: T): void
  /** true: listed and watching (after start and after each failure); false: a list or watch failed. */
  connected?(live: boolean): void
}

export interface InformerCounters {
  /** Full lists (start, 410 Gone, or a watch that kept failing). */
  lists: number
  /** Watches opened (each resume counts). */
  watches: number
  /** 410 Gone answers (resourceVersion too old). */
  gone: number
  /** Failed lists or watches (connection lost, server error). */
  failures: number
}

/** Ask the server to end each watch after this long (it resumes at once): dead connections get noticed. */
const WATCH_TIMEOUT_S = 300

export function runInformer<T extends HasMeta>(
  client: KubeClient,
  path: string,
  query: Query,
  handlers: InformerHandlers<T>,
  log: Logger,
  signal: AbortSignal,
  counters: InformerCounters = { lists: 0, watches: 0, gone: 0, failures: 0 },
): Promise<void> {
  return (async () => {
    const retry = new Reconnect(CLUSTER_VIEW_BACKOFF)
    let rv: string | undefined
    let live = false
    /** The last stream ended within 1 s with no event. */
    let flapping = false
    const setLive = (next: boolean) => {
      if (live === next) return
      live = next
      handlers.connected?.(next)
    }
    /** When the last full list answered: a 410 right after it must not make a list/410 loop. */
    let listedAt = -Infinity
    const relistSoon = async () => {
      if (Date.now() - listedAt >= 1000) return
      await retry.wait(signal).catch(() => undefined)
    }
    while (!signal.aborted) {
      try {
        if (rv === undefined) {
          const list = await client.json<Listed<T>>('GET', path, { query, signal })
          counters.lists++
          listedAt = Date.now()
          rv = list.metadata.resourceVersion ?? '0'
          handlers.relisted(list.items)
        }
        const stream = await client.watch<T>(path, { ...query, resourceVersion: rv, timeoutSeconds: WATCH_TIMEOUT_S }, signal)
        counters.watches++
        // The engine answers again: the next failure starts from the first delay (issue 21: a
        // delay reset only when a stream *ended* reopened watches after 4.7 → 22 s).
        // Not after a stream the server closed at once with nothing: that one keeps its backoff.
        if (flapping) retry.resetFailures()
        else retry.reset()
        setLive(true)
        const opened = Date.now()
        let events = 0
        for await (const event of stream) {
          events++
          if (event.type === 'ERROR') {
            const status = event.object as unknown as KubeStatus
            if (status.code === 410) {
              counters.gone++
              log.debug({ path }, 'watch: resourceVersion too old (410); listing again')
              rv = undefined
              await relistSoon()
            } else {
              log.warn({ path, code: status.code, reason: status.reason, message: status.message }, 'watch error; listing again')
              rv = undefined
            }
            break
          }
          const next = (event as WatchEvent<T>).object.metadata?.resourceVersion
          if (next) rv = next
          if (event.type === 'BOOKMARK') continue
          handlers.changed(event.type, event.object)
        }
        // The stream ended (server timeout, or after an ERROR): resume from rv, or relist. A
        // server that ends watches at once, again and again, is not asked in a tight loop.
        flapping = events === 0 && Date.now() - opened < 1000
        if (flapping) await retry.wait(signal)
        else retry.resetDelay()
      } catch (err) {
        if (signal.aborted) return
        if (isRelightError(err) && err.context.engine?.kind === 'status' && err.context.engine.status === 410) {
          counters.gone++
          rv = undefined // too old: list again (at once, unless the list itself was this fresh)
          await relistSoon()
          continue
        }
        const logIt = retry.failed()
        counters.failures++
        setLive(false)
        rv = undefined // what happened while the stream was down is unknown: list again
        if (logIt) log.warn({ path, failures: retry.failures, err: (err as Error).message }, 'watch failed; retrying')
        await retry.wait(signal).catch(() => undefined)
      }
    }
  })()
}
