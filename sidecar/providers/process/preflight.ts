/**
 * The process kind's start-up checks (its `preflight` hook): every app's replica ports must be
 * free, else the app could not listen there. A port held by a process group a sidecar that died
 * left running is not a problem: crash recovery ends that group first; nor, for `check` on a live
 * system, is one held by the running sidecar's own children.
 */
import { tcpListenProblem } from '../../startup/listen-address.js'
import { descendsFrom, tcpPortHolder } from '../../startup/port-holder.js'
import type { ProcessConfig } from './config.js'

export async function appPortProblems(blocks: readonly ProcessConfig[], leftoverGroups: ReadonlySet<number>, running?: number): Promise<string[]> {
  const problems: string[] = []
  for (const app of blocks.flatMap((instance) => instance.apps)) {
    if (app.port === undefined) continue
    for (let replica = 0; replica < app.replicas; replica++) {
      const address = `${app.host.includes(':') ? `[${app.host}]` : app.host}:${app.port + replica}`
      if (running !== undefined) {
        // Never bind an app's port while its sidecar runs: it may be starting the app right now.
        const held = tcpPortHolder(app.port + replica)
        if (held === undefined || descendsFrom(held.pid, running)) continue // free, or the running sidecar's app
        problems.push(`process: ${app.name}: ${address} is in use by another program (pid ${held.pid}, ${held.command}); the app could not listen there`)
        continue
      }
      const problem = await tcpListenProblem(`process: ${app.name}`, address)
      if (problem === undefined) continue
      const holder = tcpPortHolder(app.port + replica)
      if (holder?.pgid !== undefined && leftoverGroups.has(holder.pgid)) continue
      problems.push(`${problem}; the app could not listen there`)
    }
  }
  return problems
}
