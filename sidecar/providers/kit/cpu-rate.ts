/**
 * CPU percent from cumulative CPU-time counters, for providers' `stats()`. 100 means one core
 * busy for the whole interval (a multi-threaded app can exceed 100, like `docker stats`).
 */
export class CpuRate {
  private readonly last = new Map<string, { cpuNs: number; wallNs: number }>()

  /**
   * Record a sample and return the CPU percent since the previous sample of `key`, or
   * `undefined` on the first sample (callers then use a since-start average). A counter that
   * went backwards (process restarted) restarts the series.
   */
  sample(key: string, cpuNs: number, wallNs: number): number | undefined {
    const prev = this.last.get(key)
    this.last.set(key, { cpuNs, wallNs })
    if (!prev) return undefined
    const dWall = wallNs - prev.wallNs
    const dCpu = cpuNs - prev.cpuNs
    if (dWall <= 0 || dCpu < 0) return undefined
    return (dCpu / dWall) * 100
  }

  forget(key: string): void {
    this.last.delete(key)
  }
}

/** Round for reports: one decimal. */
export { round1 } from '../../core/provider.js'
