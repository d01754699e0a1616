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
import { socketAnswers, socketInUseMessage, socketPathProblem } from '../core/unix-socket.js'
import { lookupGroup, socketGroupProblem } from './groups.js'
import { describeListenError, tcpListenProblem, unixPath } from './listen-address.js'

export interface PreflightOptions {
  /** The resolved state directory (see config/state-dir.ts): another user must not be able to write it. */
  readonly stateDir?: string
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
  if (config.access_log !== undefined && config.access_log === config.listen) {
    problems.push(`access_log: same address as listen (${config.listen}); give each its own`)
  }
  for (const [what, address] of [['access_log', config.access_log], ['listen', config.listen]] as const) {
    if (address === undefined || (what === 'listen' && problems.some((p) => p.startsWith('access_log: same address')))) continue
    const problem = await listenProblem(what, address)
    if (problem) problems.push(problem)
  }
  return problems
}

async function listenProblem(what: string, address: string): Promise<string | undefined> {
  const path = unixPath(address)
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
