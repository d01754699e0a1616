/**
 * One-shot container stats through the Engine API (`GET /containers/{id}/stats?stream=false
 * &one-shot=true`, Docker 20.10+/API 1.41), for the heartbeat. A one-shot answer carries no
 * previous sample, so CPU is a rate between this provider's successive calls (CpuRate); the
 * first call reports the engine's own delta when it sent one, else 0.
 */
import { RelightError } from '../../core/errors.js'
import type { BackendStats } from '../../core/provider.js'
import { type CpuRate, round1 } from '../kit/cpu-rate.js'
import { type EngineClient, engineStatus } from '../moby/client.js'

interface CpuStats {
  readonly cpu_usage?: { readonly total_usage?: number }
  readonly system_cpu_usage?: number
  readonly online_cpus?: number
}

/** The fields of a Docker stats answer read here. */
export interface DockerStats {
  readonly read?: string
  readonly cpu_stats?: CpuStats
  readonly precpu_stats?: CpuStats
  readonly memory_stats?: { readonly usage?: number; readonly stats?: Readonly<Record<string, number>> }
}

export async function fetchContainerStats(engine: EngineClient, id: string, signal: AbortSignal): Promise<DockerStats> {
  try {
    return (await engine.json<DockerStats>('GET', `/containers/${encodeURIComponent(id)}/stats`, { query: { stream: false, 'one-shot': true }, signal })) ?? {}
  } catch (err) {
    if (engineStatus(err) === 404) throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `container ${id} does not exist`, { backend: id, provider: engine.name }, { cause: err })
    throw err
  }
}

/** Memory as `docker stats` shows it: usage minus the page cache (cgroup v2 inactive_file, v1 total_inactive_file). */
export function memoryBytes(s: DockerStats): number {
  const usage = s.memory_stats?.usage ?? 0
  const stats = s.memory_stats?.stats ?? {}
  const cache = stats.inactive_file ?? stats.total_inactive_file ?? 0
  return Math.max(0, usage - (cache < usage ? cache : 0))
}

/** CPU percent of one core and resident MiB; `key` names the container's CPU series in `rate`. */
export function dockerFigures(s: DockerStats, rate: CpuRate, key: string): BackendStats {
  const total = s.cpu_stats?.cpu_usage?.total_usage
  const read = s.read && !s.read.startsWith('0001-') ? Date.parse(s.read) : NaN
  if (total === undefined || Number.isNaN(read)) {
    rate.forget(key) // not running: no figures
    return { cpu_pct: 0, mem_mb: 0 }
  }
  let cpu = rate.sample(key, total, read * 1e6)
  if (cpu === undefined) {
    const pre = s.precpu_stats
    const dCpu = total - (pre?.cpu_usage?.total_usage ?? 0)
    const dSystem = (s.cpu_stats?.system_cpu_usage ?? 0) - (pre?.system_cpu_usage ?? 0)
    const cpus = s.cpu_stats?.online_cpus ?? 1
    cpu = pre?.system_cpu_usage && dSystem > 0 && dCpu >= 0 ? (dCpu / dSystem) * cpus * 100 : 0
  }
  return { cpu_pct: round1(cpu), mem_mb: round1(memoryBytes(s) / 1024 / 1024) }
}
