/**
 * How `relight-sidecar reload` reaches the running sidecar: through the admin API when
 * `admin.token` is set (the answer carries the applied changes or the file's problems), else by
 * sending SIGHUP to the pid recorded in `<state_dir>/sidecar.pid` (the result is in its log).
 * The token is sent only to a proven peer: on TCP, a connection accepted by the pid of the pid
 * file (/proc socket inodes, core/socket-owner.ts); on a unix socket, one in a directory only
 * this user or root can write. A stranger listening on `listen` gets nothing.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { connect } from 'node:net'
import { dirname, join } from 'node:path'
import { Agent, request } from 'undici'
import type { Config } from './config/schema.js'
import { stateDir, stateDirProblem, stateFileProblem, writePrivateFile } from './config/state-dir.js'
import { procStat } from './core/proc-stat.js'
import { sidecarEndpoint } from './health-client.js'
import { splitHostPort } from './core/readiness.js'
import { acceptedSocket, listenersFor, socketInodes } from './core/socket-owner.js'
import { tcpPortHolder } from './startup/port-holder.js'

interface PidRecord {
  readonly pid: number
  readonly start_ticks: number
  /**
   * The sidecar's `listen`: several sidecars on TCP without `state_dir` share the default state
   * directory, and its pid file then names whichever started last. A record for another address
   * is another config's sidecar (absent in files written before this field).
   */
  readonly listen?: string
}

export function pidFilePath(config: Config, baseDir: string): string {
  return join(stateDir(config, baseDir), 'sidecar.pid')
}

/** Record this process as the running sidecar. Returns a remover, or the reason it failed. */
export function writePidFile(config: Config, baseDir: string): { remove(): void } | { error: string; path: string } {
  const path = pidFilePath(config, baseDir)
  const record: PidRecord = { pid: process.pid, start_ticks: procStat(process.pid)?.startTicks ?? 0, listen: config.listen }
  try {
    mkdirSync(stateDir(config, baseDir), { recursive: true, mode: 0o700 })
    writePrivateFile(path, `${JSON.stringify(record)}\n`)
  } catch (err) {
    return { error: (err as Error).message, path }
  }
  return {
    remove: () => {
      try {
        const now = JSON.parse(readFileSync(path, 'utf8')) as PidRecord
        if (now.pid === record.pid) rmSync(path, { force: true })
      } catch {
        // gone already
      }
    },
  }
}

/** The running sidecar's pid from the pid file, checked against its start time. */
export function runningSidecarPid(config: Config, baseDir: string): { pid: number } | { error: string } {
  const path = pidFilePath(config, baseDir)
  // The pid file names the process to signal: believe it only if no other user could plant it.
  const dirProblem = stateDirProblem(stateDir(config, baseDir))
  if (dirProblem) return { error: dirProblem }
  const fileProblem = existsSync(path) ? stateFileProblem(path) : undefined
  if (fileProblem) return { error: `not trusting the pid file: ${fileProblem}` }
  let record: PidRecord
  try {
    record = JSON.parse(readFileSync(path, 'utf8')) as PidRecord
  } catch (err) {
    return { error: `no pid file at ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): is the sidecar running with this config?` }
  }
  const stat = procStat(record.pid)
  if (!stat || stat.startTicks !== record.start_ticks) return { error: `${path} names pid ${record.pid}, which is not running (the sidecar stopped or crashed)` }
  if (record.listen !== undefined && record.listen !== config.listen) {
    return { error: `${path} names the sidecar listening on ${record.listen} (pid ${record.pid}), not this config's ${config.listen}: give each sidecar its own state_dir` }
  }
  return { pid: record.pid }
}

export interface ReloadOutcome {
  readonly exitCode: number
  readonly text: string
}

/** Raised by the connector when the peer is not the sidecar: the token is never sent. */
class UnprovenPeer extends Error {}

/** Owners the reload client believes: itself and root (as for the state files). */
const trusted = (uid: number) => uid === 0 || uid === process.getuid?.()

/**
 * Why the unix socket at `path` may not be the sidecar's, or undefined: only a trusted user may
 * have bound it (its directory is writable by no one else, and the socket is theirs).
 */
function unixSocketProblem(path: string): string | undefined {
  try {
    const dir = statSync(dirname(path))
    if (!trusted(dir.uid) || (dir.mode & 0o022) !== 0) return `${dirname(path)} can be written by other users (uid ${dir.uid}, mode ${(dir.mode & 0o7777).toString(8)}), so anyone could have bound ${path}`
    const socket = lstatSync(path)
    if (!socket.isSocket()) return `${path} is not a socket`
    if (!trusted(socket.uid)) return `${path} belongs to uid ${socket.uid}, not to this user or root`
  } catch (err) {
    return `cannot inspect ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`
  }
  return undefined
}

/**
 * Prove that the connection from local port `clientPort` to `port` was accepted by `pid` (the
 * sidecar of the trusted pid file): the server side of the connection must be one of its
 * sockets. Waits briefly for the sidecar to accept(); refuses at once when another process
 * listens on the port too.
 */
async function provePeer(pid: number, host: string, port: number, clientPort: number): Promise<string | undefined> {
  try {
    readdirSync(`/proc/${pid}/fd`)
  } catch (err) {
    return `cannot read /proc/${pid}/fd (${(err as NodeJS.ErrnoException).code}) to check who listens on port ${port}: run reload as root or as the sidecar's user`
  }
  const deadline = Date.now() + 2000
  for (;;) {
    const ours = socketInodes(pid)
    const foreign = listenersFor(host, port).filter((l) => !ours.has(l.inode))
    if (foreign.length > 0) {
      const holder = tcpPortHolder(port)
      return `port ${port} is held by a process other than the sidecar (pid ${pid})${holder && holder.pid !== pid ? `: pid ${holder.pid}, ${holder.command}` : ''}`
    }
    const accepted = acceptedSocket(port, clientPort)
    if (accepted && ours.has(accepted.inode)) return undefined
    if (Date.now() > deadline) return `the connection to port ${port} was not accepted by the sidecar (pid ${pid})`
    await new Promise((r) => setTimeout(r, 10))
  }
}

async function viaAdmin(config: Config, token: string, pid: number): Promise<ReloadOutcome | undefined> {
  const { origin, socketPath: unix } = sidecarEndpoint(config.listen)
  if (unix) {
    const problem = unixSocketProblem(unix)
    if (problem) return { exitCode: 1, text: `not sending the admin token: ${problem}\n` }
  }
  const { host, port } = splitHostPort(origin.slice('http://'.length))
  // TCP: the token goes out only on a connection the sidecar of the pid file accepted.
  const dispatcher = unix
    ? new Agent({ connect: { socketPath: unix } })
    : new Agent({
        connect: (_options, callback) => {
          const socket = connect({ host, port })
          socket.once('error', (err) => callback(err, null))
          socket.once('connect', () => {
            void provePeer(pid, host, port, socket.localPort as number).then((problem) => {
              if (problem === undefined) return callback(null, socket)
              socket.destroy()
              callback(new UnprovenPeer(problem), null)
            })
          })
        },
      })
  try {
    const res = await request(`${origin}/_relight/admin/reload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(120_000),
      ...(dispatcher ? { dispatcher } : {}),
    })
    const body = await res.body.text()
    if (res.statusCode === 200 || res.statusCode === 422) {
      const result = JSON.parse(body) as { ok: boolean; errors?: string[]; changed?: boolean; summary?: unknown }
      if (!result.ok) return { exitCode: 1, text: `reload refused; the running configuration stays:\n  - ${(result.errors ?? []).join('\n  - ')}\n` }
      return { exitCode: 0, text: `${result.changed ? 'config applied' : 'config applied: nothing changed'}\n${JSON.stringify(result.summary, null, 2)}\n` }
    }
    // The sidecar accepts the right token even while it limits guesses; should it answer 429
    // anyway, the peer is proven (pid file): SIGHUP does the same reload.
    if (res.statusCode === 429) return undefined
    return { exitCode: 1, text: `the admin API answered ${res.statusCode}: ${body}\n` }
  } catch (err) {
    if (err instanceof UnprovenPeer) return { exitCode: 1, text: `not sending the admin token: ${err.message}\n` }
    return undefined // not reachable: fall back to the pid file
  } finally {
    await dispatcher?.close()
  }
}

/** `relight-sidecar reload`: the admin API if configured and reachable, else SIGHUP. */
export async function requestReload(config: Config, baseDir: string): Promise<ReloadOutcome> {
  // The pid file (trusted: owner, mode, no symlink) says which process is the sidecar; the admin
  // token is only sent to a peer proven to be that process (or a unix socket only it could bind).
  const found = runningSidecarPid(config, baseDir)
  if ('error' in found) return { exitCode: 1, text: `cannot reach the sidecar: ${found.error}\n` }
  if (config.admin) {
    const answer = await viaAdmin(config, config.admin.token, found.pid)
    if (answer) return answer
  }
  process.kill(found.pid, 'SIGHUP')
  return { exitCode: 0, text: `sent SIGHUP to the sidecar (pid ${found.pid}); its log says what was applied (or why the file was refused)\n` }
}
