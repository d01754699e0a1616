import fs from 'node:fs'
import { Writable } from 'node:stream'
import pino, { type Logger } from 'pino'

export type LogFormat = 'json' | 'pretty'

/** Paths never written to the log in clear. */
export const REDACT = ['token', 'secret', 'authorization', '*.token', '*.secret', '*.authorization', 'headers.cookie', 'req.headers.cookie', 'req.headers.authorization']

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' }
const SKIP = new Set(['level', 'time', 'hostname', 'msg'])

/** One short line per record: `12:00:01 INFO  hello woke from=stopped ms=312`. */
export function formatPretty(line: string): string {
  let rec: Record<string, unknown>
  try {
    rec = JSON.parse(line) as Record<string, unknown>
  } catch {
    return line
  }
  const time = new Date(typeof rec.time === 'number' ? rec.time : Date.now()).toISOString().slice(11, 19)
  const who = [rec.provider, rec.backend ?? rec.app].filter((x) => typeof x === 'string').join('/')
  const fields = Object.entries(rec)
    .filter(([k]) => !SKIP.has(k) && k !== 'provider' && k !== 'backend' && k !== 'app')
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ')
  return `${time} ${LEVELS[rec.level as number] ?? rec.level} ${who ? `${who} ` : ''}${String(rec.msg ?? '')}${fields ? `  ${fields}` : ''}\n`
}

export function createLogger(level: string, format: LogFormat, out: NodeJS.WritableStream = process.stdout): Logger {
  const options = { level, redact: { paths: REDACT, censor: '[redacted]' }, base: undefined }
  if (format === 'json') return pino(options, dropWhenNobodyReads(pino.destination({ fd: 1, sync: false })))
  const pretty = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) out.write(formatPretty(line))
      done()
    },
  })
  return pino(options, pretty)
}

/**
 * pino flushes its asynchronous destination synchronously at exit; sonic-boom 4's flushSync
 * retries EVERY write error every 100 ms, for ever, so a sidecar whose stdout reader had gone
 * (a closed pipe: EPIPE) hung after SIGTERM instead of exiting. While it flushes, a write to a
 * pipe nobody reads counts as written: the lines are dropped (no one could read them) and the
 * flush ends. Other errors behave as before.
 */
function dropWhenNobodyReads<T extends { flushSync(): void }>(dest: T): T {
  const flushSync = dest.flushSync.bind(dest)
  dest.flushSync = () => {
    const writeSync = fs.writeSync
    fs.writeSync = ((fd: number, data: string | NodeJS.ArrayBufferView, ...rest: unknown[]) => {
      try {
        return (writeSync as (...args: unknown[]) => number)(fd, data, ...rest)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err
        return typeof data === 'string' ? Buffer.byteLength(data, typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : 'utf8') : data.byteLength
      }
    }) as typeof fs.writeSync
    try {
      flushSync()
    } finally {
      fs.writeSync = writeSync
    }
  }
  return dest
}
