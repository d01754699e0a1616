/**
 * The process kind's start-up checks (its `preflight` hook): every app's replica ports must be
 * free, else the app could not listen there. A port held by a process group a sidecar that died
 * left running is not a problem: crash recovery ends that group first.
 */
import { tcpListenProblem } from '../../startup/listen-address.js'
import { tcpPortHolder } from '../../startup/port-holder.js'
import type { ProcessConfig } from './config.js'

export async function appPortProblems(blocks: readonly ProcessConfig[], leftoverGroups: ReadonlySet<number>): Promise<string[]> {
  const problems: string[] = []
  for (const app of blocks.flatMap((instance) => instance.apps)) {
    if (app.port === undefined) continue
    for (let replica = 0; replica < app.replicas; replica++) {
      const address = `${app.host.includes(':') ? `[${app.host}]` : app.host}:${app.port + replica}`
      const problem = await tcpListenProblem(`process: ${app.name}`, address)
      if (problem === undefined) continue
      const holder = tcpPortHolder(app.port + replica)
      if (holder?.pgid !== undefined && leftoverGroups.has(holder.pgid)) continue
      problems.push(`${problem}; the app could not listen there`)
    }
  }
  return problems
}
