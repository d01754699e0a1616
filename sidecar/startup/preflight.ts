/**
 * What `serve` needs before it starts, checked without starting anything. `check` prints these
 * problems; `serve` refuses to start on the first one with the same sentence, so a config that
 * `check` passes does not then fail at start-up (short of a race with another program).
 * These are the sidecar's own checks; each provider kind adds its own through its `preflight`
 * hook (providers/index.ts runs both).
 */
import type { Config } from '../config/schema.js'
import { stateDirProblem } from '../config/state-dir.js'
import { RelightError } from '../core/errors.js'
import { flagDirProblem } from '../core/fast-lane.js'
import { socketAnswers, socketInUseMessage, socketPathProblem } from '../core/unix-socket.js'
import { lookupGroup, socketGroupProblem } from './groups.js'
import { describeListenError, parseTcpAddress, tcpListenProblem, unixPath } from './listen-address.js'
import { tcpPortHolder, unixSocketHolder } from './port-holder.js'
import { socketReachProblems } from './socket-reach.js'

export interface PreflightOptions {
  /** The resolved state directory (see config/state-dir.ts): another user must not be able to write it. */
  readonly stateDir?: string
  /**
   * `check` on a live system: the pid of this config's running sidecar (ops/live-sidecar.ts). Its
   * own listeners and its children's ports are then not "in use by another program", and they
   * are recognised from /proc alone: nothing binds or connects where it listens.
   */
  readonly runningSidecar?: number
}

/** One-line reasons `serve` would refuse to start, in the order it would meet them. */
export async function preflight(config: Config, options: PreflightOptions = {}): Promise<string[]> {
  const problems: string[] = []
  if (options.stateDir !== undefined) {
    const problem = stateDirProblem(options.stateDir)
    if (problem) problems.push(problem)
  }
  if (config.socket_group !== undefined) {
    const problem = socketGroupProblem(config.socket_group)
    if (problem) problems.push(problem)
  }
  const addresses = [['access_log', config.access_log], ['listen', config.listen], ['ops_listen', config.ops_listen]] as const
  const clashing = new Set<string>()
  for (const [i, [what, address]] of addresses.entries()) {
    const first = addresses.slice(0, i).find(([, other]) => other !== undefined && other === address)
    if (address === undefined || first === undefined) continue
    problems.push(`${first[0]}: same address as ${what} (${address}); give each its own`)
    clashing.add(what)
  }
  for (const [what, address] of addresses) {
    if (address === undefined || clashing.has(what)) continue
    const problem = await listenProblem(what, address, options.runningSidecar)
    if (problem) problems.push(problem)
  }
  if (config.fast_lane_dir !== undefined) {
    // serve's FastLane.reset() refuses these with the same sentence (daemon.ts)
    const problem = flagDirProblem(config.fast_lane_dir)
    if (problem) problems.push(`fast_lane_dir ${config.fast_lane_dir} refused: ${problem}`)
  }
  problems.push(...socketReachProblems(config))
  return problems
}

async function listenProblem(what: string, address: string, running: number | undefined): Promise<string | undefined> {
  const path = unixPath(address)
  if (running !== undefined) {
    const holder = path === undefined ? tcpPortHolder(parseTcpAddress(address).port) : unixSocketHolder(path)
    if (holder?.pid === running) return undefined // the running sidecar's own listener
    // Never connect to a live sidecar's sockets (its access log would log the connection).
    if (path !== undefined) return holder === undefined ? undefined : `${socketInUseMessage(path, what)} (pid ${holder.pid}, ${holder.command})`
  }
  if (path === undefined) return tcpListenProblem(what, address)
  const problem = socketPathProblem(path, what)
  if (problem) return problem
  return (await socketAnswers(path)) ? socketInUseMessage(path, what) : undefined
}

/** The gid sockets get (`socket_group`), undefined for owner-only sockets. */
export function socketGid(config: Config): number | undefined {
  if (config.socket_group === undefined) return undefined
  const group = lookupGroup(config.socket_group)
  if (!group) throw new RelightError('RELIGHT_ERR_CONFIG', socketGroupProblem(config.socket_group) ?? `socket_group: ${config.socket_group}`)
  return group.gid
}

export { describeListenError }
