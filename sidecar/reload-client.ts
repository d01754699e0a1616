/**
 * How `relight-sidecar reload` reaches the running sidecar: through the admin API when
 * `admin.token` is set (the answer carries the applied changes or the file's problems), else by
 * sending SIGHUP to the pid recorded in `<state_dir>/sidecar.pid` (the result is in its log).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import type { Config } from './config/schema.js'
import { stateDir, stateDirProblem, stateFileProblem } from './config/state-dir.js'
import { procStat } from './core/proc-stat.js'
import { sidecarEndpoint } from './health-client.js'

interface PidRecord {
  readonly pid: number
  readonly start_ticks: number
}

export function pidFilePath(config: Config, baseDir: string): string {
  return join(stateDir(config, baseDir), 'sidecar.pid')
}

/** Record this process as the running sidecar. Returns a remover, or the reason it failed. */
export function writePidFile(config: Config, baseDir: string): { remove(): void } | { error: string; path: string } {
  const path = pidFilePath(config, baseDir)
  const record: PidRecord = { pid: process.pid, start_ticks: procStat(process.pid)?.startTicks ?? 0 }
  try {
    mkdirSync(stateDir(config, baseDir), { recursive: true, mode: 0o700 })
    writeFileSync(path, `${JSON.stringify(record)}\n`, { mode: 0o644 })
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
  return { pid: record.pid }
}

export interface ReloadOutcome {
  readonly exitCode: number
  readonly text: string
}

async function viaAdmin(config: Config, token: string): Promise<ReloadOutcome | undefined> {
  const { origin, socketPath } = sidecarEndpoint(config.listen)
  const dispatcher = socketPath ? new Agent({ connect: { socketPath } }) : undefined
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
    return { exitCode: 1, text: `the admin API answered ${res.statusCode}: ${body}\n` }
  } catch {
    return undefined // not reachable: fall back to the pid file
  } finally {
    await dispatcher?.close()
  }
}

/** `relight-sidecar reload`: the admin API if configured and reachable, else SIGHUP. */
export async function requestReload(config: Config, baseDir: string): Promise<ReloadOutcome> {
  if (config.admin) {
    const answer = await viaAdmin(config, config.admin.token)
    if (answer) return answer
  }
  const found = runningSidecarPid(config, baseDir)
  if ('error' in found) return { exitCode: 1, text: `cannot reach the sidecar: ${config.admin ? 'the admin API does not answer and ' : ''}${found.error}\n` }
  process.kill(found.pid, 'SIGHUP')
  return { exitCode: 0, text: `sent SIGHUP to the sidecar (pid ${found.pid}); its log says what was applied (or why the file was refused)\n` }
}
