/**
 * A reload reads the config file only once it is whole. Editors and config tools often write in
 * place (truncate, then write), and a file cut at a line boundary is still valid YAML: applied,
 * it removes apps. Two guards, both cheap and run only on a reload:
 *
 * 1. While any process holds the file open for writing (/proc/<pid>/fd → the file, fdinfo
 *    flags O_WRONLY or O_RDWR), wait for it to close it, up to WRITER_WAIT_MS; then refuse
 *    (the running configuration stays). This is the deterministic guard: a writer that keeps
 *    the file open across its writes is always waited for, however slow it is.
 * 2. Then read until two reads SETTLE_MS apart agree (same bytes, same inode, size and mtime),
 *    for a writer that reopens the file between its writes.
 *
 * A non-root sidecar sees only its own user's processes in guard 1. The README tells operators
 * to write a new file and rename it over the old one, which needs neither guard.
 */
import { readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs'
import type { Logger } from 'pino'
import type { Config } from './schema.js'
import { ConfigError, loadConfig, parseConfig } from './load.js'

const WRITER_WAIT_MS = 10_000
const SETTLE_MS = 100
const POLL_MS = 25

const O_ACCMODE = 0o3

/** Processes (pid and name) that hold `file` open for writing. */
export function writersOf(file: string, proc = '/proc'): { pid: number; command: string }[] {
  let target: string
  try {
    target = realpathSync(file)
  } catch {
    return []
  }
  const writers: { pid: number; command: string }[] = []
  let pids: string[]
  try {
    pids = readdirSync(proc).filter((d) => /^\d+$/.test(d))
  } catch {
    return []
  }
  for (const pid of pids) {
    let fds: string[]
    try {
      fds = readdirSync(`${proc}/${pid}/fd`)
    } catch {
      continue
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`${proc}/${pid}/fd/${fd}`) !== target) continue
        const flags = Number.parseInt(/^flags:\s*([0-7]+)/m.exec(readFileSync(`${proc}/${pid}/fdinfo/${fd}`, 'utf8'))?.[1] ?? '0', 8)
        if ((flags & O_ACCMODE) === 0) continue // read-only
        let command = '?'
        try {
          command = readFileSync(`${proc}/${pid}/comm`, 'utf8').trim()
        } catch {
          // gone
        }
        writers.push({ pid: Number(pid), command })
        break
      } catch {
        // closed meanwhile
      }
    }
  }
  return writers
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms))

function snapshot(file: string): { key: string; text: string } | undefined {
  try {
    const st = statSync(file)
    const text = readFileSync(file, 'utf8')
    return { key: `${st.ino}:${st.size}:${st.mtimeMs}:${text}`, text }
  } catch {
    return undefined
  }
}

/**
 * loadConfig for a reload: waits until no process writes the file and two reads agree. Throws
 * ConfigError (the reload then refuses and the running configuration stays).
 */
export async function loadSettledConfig(file: string, env: NodeJS.ProcessEnv, log: Logger, waitMs = WRITER_WAIT_MS): Promise<Config> {
  const deadline = Date.now() + waitMs
  let logged = false
  for (;;) {
    const writers = writersOf(file)
    if (writers.length === 0) {
      const first = snapshot(file)
      if (first === undefined) return loadConfig(file, env) // missing or unreadable: its own message
      await pause(SETTLE_MS)
      const second = snapshot(file)
      if (second !== undefined && first.key === second.key && writersOf(file).length === 0) return parseConfig(second.text, file, env)
      if (Date.now() > deadline) throw new ConfigError(file, [`the file kept changing for ${waitMs / 1000} s; not applied (write a new file and rename it over this one)`])
      continue
    }
    if (!logged) {
      log.warn({ file, writers }, 'config file is open for writing: the reload waits until it is closed')
      logged = true
    }
    if (Date.now() > deadline) {
      throw new ConfigError(file, [`still open for writing by ${writers.map((w) => `pid ${w.pid} (${w.command})`).join(', ')} after ${waitMs / 1000} s; not applied (write a new file and rename it over this one)`])
    }
    await pause(POLL_MS)
  }
}
