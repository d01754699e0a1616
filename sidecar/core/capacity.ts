/**
 * `max_awake`: a cap on awake backends, across every provider (top-level `max_awake`) and per
 * provider instance (`max_awake` in its block). A group's members count as one. A wake that
 * would exceed a cap first puts the least recently active awake backend (or group) that may
 * sleep early (nothing in flight, no wake pending, not always_on, not inside awake_during) to
 * sleep; with none, the wake is refused with RELIGHT_ERR_CAPACITY.
 */
import type { Backend } from './backend.js'
import { RelightError } from './errors.js'
import { providerId } from './provider.js'

export interface CapacityLimits {
  /** Across every provider; undefined: no cap. */
  readonly global?: number | undefined
  /** By provider id. */
  readonly perProvider: ReadonlyMap<string, number>
}

/** Seconds a client refused for capacity is told to wait (an awake app may go idle meanwhile). */
export const CAPACITY_RETRY_AFTER_S = 5
/** Evictions tried for one wake before it is refused (each may lose a race with a request). */
const MAX_EVICTIONS = 8

/** A backend, or every member of its group, as one unit of the cap. */
export function unitOf(b: Backend): string {
  return b.info.group === undefined ? b.key : `${providerId(b.provider)}\0group\0${b.info.group}`
}

/** Awake for the cap: routed, waking, being put to sleep, or left running by a failed wake. */
function holdsRoom(b: Backend): boolean {
  return !b.removed && (b.phase !== 'asleep' || b.info.state === 'running')
}

interface Scope {
  /** `global`, or the provider id. */
  readonly name: string
  readonly cap: number
  readonly includes: (b: Backend) => boolean
}

export class Capacity {
  /** Units admitted whose wake has not settled yet: counted as awake. */
  private readonly reserved = new Map<string, Backend>()
  /** Admissions run one at a time, so two wakes never take the same room or evict the same unit. */
  private chain: Promise<unknown> = Promise.resolve()
  private readonly backends: () => Iterable<Backend>
  private readonly limits: () => CapacityLimits

  constructor(backends: () => Iterable<Backend>, limits: () => CapacityLimits) {
    this.backends = backends
    this.limits = limits
  }

  /** Whether any cap applies to this backend (no cap: wakes skip admission entirely). */
  applies(b: Backend): boolean {
    const limits = this.limits()
    return limits.global !== undefined || limits.perProvider.has(providerId(b.provider))
  }

  /**
   * Wait for room for `target`'s unit, evicting when needed. Resolves with the function that
   * gives the reservation back (call it when the wake settled); rejects with RELIGHT_ERR_CAPACITY.
   */
  admit(target: Backend): Promise<() => void> {
    const run = this.chain.then(() => this.admitNow(target))
    this.chain = run.catch(() => undefined)
    return run
  }

  private async admitNow(target: Backend): Promise<() => void> {
    const unit = unitOf(target)
    for (let attempt = 0; ; attempt++) {
      if (this.reserved.has(unit) || this.awakeUnits(() => true).has(unit)) return () => undefined
      const full = this.scopes(target).filter((s) => this.inUse(s) >= s.cap)
      if (full.length === 0) {
        this.reserved.set(unit, target)
        return () => {
          if (this.reserved.get(unit) === target) this.reserved.delete(unit)
        }
      }
      const victim = attempt < MAX_EVICTIONS ? this.leastRecentlyActive(full, unit) : undefined
      const caps = full.map((s) => `max_awake ${s.cap} (${s.name})`).join(', ')
      if (victim === undefined) {
        // A backend already being put to sleep (the idle sweep, a schedule) frees room soon: wait for it.
        const leaving = this.leaving(full)
        if (leaving.length > 0 && attempt < MAX_EVICTIONS) {
          await Promise.race(leaving.map((b) => b.whenSettled()))
          continue
        }
        throw new RelightError(
          'RELIGHT_ERR_CAPACITY',
          `${target.info.name} is queued: ${caps} reached and every awake backend is busy or must stay awake`,
          { backend: target.info.name, retryAfter: CAPACITY_RETRY_AFTER_S, reason: caps },
        )
      }
      // Every awake member of the unit; a member that refuses (a request arrived) keeps it awake.
      await Promise.all(victim.map((b) => b.sleepFor('evicted', `${caps}: room for ${target.info.name}`)))
    }
  }

  private scopes(target: Backend): Scope[] {
    const limits = this.limits()
    const id = providerId(target.provider)
    const scopes: Scope[] = []
    const own = limits.perProvider.get(id)
    if (own !== undefined) scopes.push({ name: id, cap: own, includes: (b) => providerId(b.provider) === id })
    if (limits.global !== undefined) scopes.push({ name: 'global', cap: limits.global, includes: () => true })
    return scopes
  }

  /** Awake units in a scope, each with its awake members. */
  private awakeUnits(includes: (b: Backend) => boolean): Map<string, Backend[]> {
    const units = new Map<string, Backend[]>()
    for (const b of this.backends()) {
      if (!holdsRoom(b) || !includes(b)) continue
      const unit = unitOf(b)
      const members = units.get(unit)
      if (members) members.push(b)
      else units.set(unit, [b])
    }
    return units
  }

  /** Awake units in a scope plus those admitted and still waking. */
  private inUse(scope: Scope): number {
    const awake = this.awakeUnits(scope.includes)
    let n = awake.size
    for (const [unit, b] of this.reserved) if (scope.includes(b) && !awake.has(unit)) n++
    return n
  }

  /** Backends in every full scope that are being put to sleep right now. */
  private leaving(full: readonly Scope[]): Backend[] {
    return [...this.backends()].filter((b) => b.phase === 'sleeping' && !b.removed && full.every((s) => s.includes(b)))
  }

  /** The awake unit in every full scope whose members may all sleep early and were active least recently. */
  private leastRecentlyActive(full: readonly Scope[], except: string): Backend[] | undefined {
    let best: Backend[] | undefined
    let bestActivity = Infinity
    for (const [unit, members] of this.awakeUnits((b) => full.every((s) => s.includes(b)))) {
      if (unit === except || this.reserved.has(unit)) continue
      if (!members.every((b) => b.maySleepEarly())) continue
      const activity = Math.max(...members.map((b) => b.lastActivity))
      if (activity < bestActivity) {
        best = members
        bestActivity = activity
      }
    }
    return best
  }
}
