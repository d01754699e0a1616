import { closeSync, constants as fs, fchmodSync, lstatSync, openSync, renameSync, rmSync, statSync, type Stats, writeSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import type { Config } from './schema.js'

export const DEFAULT_STATE_DIR = '/run/relight'

/**
 * Where the sidecar keeps what must survive its own crash (the children it started):
 * `state_dir`, else the directory of the listen socket or of the access-log socket when either
 * is a unix socket, else /run/relight. Relative paths resolve against `baseDir`.
 */
export function stateDir(config: Pick<Config, 'state_dir' | 'listen' | 'access_log'>, baseDir: string): string {
  if (config.state_dir !== undefined) return resolve(baseDir, config.state_dir)
  for (const address of [config.listen, config.access_log]) {
    if (address?.startsWith('unix:')) return dirname(resolve(baseDir, address.slice('unix:'.length)))
  }
  return DEFAULT_STATE_DIR
}

/** Owners whose files the sidecar trusts: itself and root. */
function trustedOwner(uid: number): boolean {
  return uid === 0 || uid === process.getuid?.()
}

/**
 * Why `dir` cannot hold the sidecar's state, or undefined when it can (or does not exist yet: the
 * sidecar creates it, owner-only). Crash recovery signals the process groups its records name and
 * `reload` signals the pid in sidecar.pid, so a directory another user can write would let them
 * choose what gets killed. `what` names the setting in the message.
 */
export function stateDirProblem(dir: string, what = 'state_dir'): string | undefined {
  let st: Stats
  try {
    st = statSync(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    return `${what}: cannot read ${dir} (${(err as Error).message})`
  }
  if (!st.isDirectory()) return `${what}: ${dir} is not a directory`
  if (!trustedOwner(st.uid)) return `${what}: ${dir} belongs to uid ${st.uid}, not to this user (${process.getuid?.()}) or root; its records decide which processes the sidecar signals, so it must be ours (set state_dir to a directory only this user can write)`
  if ((st.mode & 0o022) !== 0) return `${what}: ${dir} is writable by ${st.mode & 0o002 ? 'every user' : 'its group'} (mode ${(st.mode & 0o7777).toString(8)}); its records decide which processes the sidecar signals, so only its owner may write it (chmod go-w, or set state_dir to another directory)`
  return undefined
}

/**
 * Why the state file `file` must not be believed, or undefined: it must be a regular file (not a
 * symlink) owned by this user or root, and writable by its owner only (another user who may
 * rewrite it chooses what it names).
 */
export function stateFileProblem(file: string): string | undefined {
  let st: Stats
  try {
    st = lstatSync(file)
  } catch (err) {
    return (err as Error).message
  }
  if (st.isSymbolicLink()) return `${file} is a symbolic link`
  if (!st.isFile()) return `${file} is not a regular file`
  if (!trustedOwner(st.uid)) return `${file} belongs to uid ${st.uid}, not to this user or root`
  if ((st.mode & 0o022) !== 0) return `${file} is writable by ${st.mode & 0o002 ? 'every user' : 'its group'} (mode ${(st.mode & 0o7777).toString(8)})`
  return undefined
}

/**
 * Write a state file the sidecar will trust later: a fresh temporary file (O_EXCL, never
 * through a symlink), mode 0600 whatever umask or an earlier file said, renamed over `file`.
 * So an existing file's owner, mode or link never carries over.
 */
export function writePrivateFile(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`
  rmSync(tmp, { force: true })
  const fd = openSync(tmp, fs.O_WRONLY | fs.O_CREAT | fs.O_EXCL | fs.O_NOFOLLOW, 0o600)
  try {
    fchmodSync(fd, 0o600)
    writeSync(fd, text)
  } finally {
    closeSync(fd)
  }
  try {
    renameSync(tmp, file)
  } catch (err) {
    rmSync(tmp, { force: true })
    throw err
  }
}
