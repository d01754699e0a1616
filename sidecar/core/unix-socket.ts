import { accessSync, chmodSync, chownSync, constants as fsConstants, mkdirSync, statSync, unlinkSync } from 'node:fs'
import { type Server, connect } from 'node:net'
import { dirname } from 'node:path'
import { RelightError } from './errors.js'

/** Longest unix socket path Linux accepts (sun_path is 108 bytes with the terminating NUL). */
const MAX_SOCKET_PATH = 107

/**
 * Why a unix socket cannot be created at `path`, or undefined when it can: the path is too
 * long, or its directory is missing and cannot be created, or is not writable. `what` names the
 * config key (`listen`, `access_log`). `check` and `serve` both use these sentences.
 */
export function socketPathProblem(path: string, what: string): string | undefined {
  const bytes = Buffer.byteLength(path)
  if (bytes > MAX_SOCKET_PATH) return `${what}: the unix socket path ${path} is too long (${bytes} bytes; Linux allows ${MAX_SOCKET_PATH})`
  const dir = dirname(path)
  let existing = dir
  for (;;) {
    try {
      if (!statSync(existing).isDirectory()) return `${what}: cannot create the directory ${dir} for ${path}: ${existing} is not a directory`
      break
    } catch {
      const parent = dirname(existing)
      if (parent === existing) break
      existing = parent
    }
  }
  try {
    accessSync(existing, fsConstants.W_OK | fsConstants.X_OK)
  } catch {
    return existing === dir
      ? `${what}: the directory ${dir} is not writable by ${whoami()}, so ${path} cannot be created`
      : `${what}: the directory ${dir} does not exist and cannot be created (${existing} is not writable by ${whoami()})`
  }
  return undefined
}

function whoami(): string {
  return `uid ${process.getuid?.() ?? '?'}`
}

/** True when a program accepts connections on the unix socket at `path`. */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = connect(path)
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

export function socketInUseMessage(path: string, what: string): string {
  return `${what}: ${path} is in use by a running program (another relight-sidecar?); stop it or choose another path`
}

/**
 * Make `path` free for a unix socket listener: its directory is created when missing (mode
 * 0755: the socket's own mode guards it); a stale socket file (left by a crash) is removed; a
 * socket something still answers on is refused rather than taken over.
 */
export async function claimSocketPath(path: string, what: string): Promise<void> {
  const problem = socketPathProblem(path, what)
  if (problem) throw new RelightError('RELIGHT_ERR_CONFIG', problem)
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 })
  if (await socketAnswers(path)) throw new RelightError('RELIGHT_ERR_CONFIG', socketInUseMessage(path, what))
  try {
    unlinkSync(path)
  } catch {
    // not there: fine
  }
}

/**
 * Run `bind`, a synchronous `server.listen(path)` (the bind(2) of a unix socket happens inside
 * that call), under umask 077: the socket file is made 0700, whatever the process umask, so no
 * other user can connect before secureSocket gives it its final mode. Under umask 0 it was 0777
 * until then, and a connection opened in that window stays open, counted as Caddy's. The umask
 * is process-wide: it is changed only for the duration of this synchronous call, so nothing
 * else runs under it.
 */
export function bindPrivately<T>(bind: () => T): T {
  const old = process.umask(0o077)
  try {
    process.umask(old | 0o077)
    return bind()
  } finally {
    process.umask(old)
  }
}

/**
 * For a server a library binds (Fastify's app.listen awaits its plugins first): its next
 * `listen` call runs through bindPrivately.
 */
export function listenPrivately(server: Server): void {
  const listen = server.listen
  const once = function (this: Server, ...args: unknown[]) {
    server.listen = listen
    return bindPrivately(() => listen.apply(this, args as Parameters<Server['listen']>))
  }
  server.listen = once as Server['listen']
}

/**
 * Give a freshly bound socket its final permissions: owner-only (0600), or with `gid` mode 0660
 * and that group (`socket_group`). Connecting needs write permission; the socket was bound 0700
 * (bindPrivately), so between bind and this call nobody but the owner can connect.
 */
export function secureSocket(path: string, what: string, gid: number | undefined): void {
  try {
    if (gid !== undefined) chownSync(path, -1, gid)
    chmodSync(path, gid === undefined ? 0o600 : 0o660)
  } catch (err) {
    throw new RelightError('RELIGHT_ERR_CONFIG', `${what}: cannot set the owner group or mode of ${path}: ${(err as Error).message}`, {}, { cause: err })
  }
}
