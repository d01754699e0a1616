/**
 * `max_awake`: a cap on awake backends, across every provider (top-level `max_awake`) and per
 * provider instance (`max_awake` in its block). A group's members count as one. A wake that
 * would exceed a cap first puts the least recently active awake backend (or group) that may
 * sleep early (nothing in flight, no wake pending, not always_on, not inside awake_during) to
 * sleep, unless it was active less than min(idle_timeout, 5 s) ago or answered a request without
 * a ticket less than idle_timeout ago (Backend.mayBeEvicted); with none, the wake is refused with
 * RELIGHT_ERR_CAPACITY.
 */
import type { Backend } from './backend.js'
import { RelightError } from './errors.js'
import { providerId } from './provider.js'
import { abortable } from './timers.js'

export interface CapacityLimits {
  /** Across every provider; undefined: no cap. */
  readonly global?: number | undefined
  /** By provider id. */
  readonly perProvider: ReadonlyMap<string, number>
}

/**
 * Bounds of the Retry-After a client refused for capacity is told: the least time before an
 * awake backend in the full caps could be evicted (Backend.evictableIn), at least 1 s, at most
 * 60 s (also when only a policy ends every one: always_on, awake_during).
 */
export const CAPACITY_RETRY_MIN_S = 1
export const CAPACITY_RETRY_MAX_S = 60
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
  /** Units admitted whose wake has not settled yet (or waiting for their victim): counted as awake. */
  private readonly reserved = new Map<string, Backend>()
  /**
   * Backends being evicted, each with the unit it makes room for: never picked again, and while
   * that unit's reservation is held their room is already spoken for.
   */
  private readonly evicting = new Map<Backend, string>()
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
   * gives the reservation back (call it when the wake settled); rejects with RELIGHT_ERR_CAPACITY,
   * also when `deadline` ends first (the wake_timeout of the request).
   *
   * No lock: every decision (room, victim, reservation) is made synchronously between two awaits,
   * and nothing is awaited while another admission would have to wait for it. A wake that has
   * room, or needs another provider's room, is never held up by a slow engine stop.
   */
  async admit(target: Backend, deadline: AbortSignal): Promise<() => void> {
    const unit = unitOf(target)
    for (let attempt = 0; ; attempt++) {
      if (deadline.aborted) throw this.refusal(target, this.fullScopes(target), 'no room freed within wake_timeout')
      if (this.reserved.has(unit) || this.awakeUnits(() => true).has(unit)) return () => undefined
      const full = this.fullScopes(target)
      if (full.length === 0) return this.reserve(unit, target)
      const victim = attempt < MAX_EVICTIONS ? this.leastRecentlyActive(full, unit) : undefined
      if (victim === undefined) {
        // A backend already being put to sleep (the idle sweep, a schedule) frees room soon: wait for it.
        const leaving = this.leaving(full)
        if (leaving.length > 0 && attempt < MAX_EVICTIONS) {
          await abortable(Promise.race(leaving.map((b) => b.whenSettled())), deadline).catch(() => undefined)
          continue
        }
        throw this.refusal(target, full, 'every awake backend is busy or must stay awake')
      }
      // Room and victim are taken now, before the first await: no other admission takes either.
      const release = this.reserve(unit, target)
      for (const b of victim) this.evicting.set(b, unit)
      const reason = `${describe(full)}: room for ${target.info.name}`
      // Every awake member of the unit; a member that refuses (a request arrived) keeps it awake.
      const slept = Promise.all(victim.map((b) => b.sleepFor('evicted', reason))).finally(() => {
        for (const b of victim) this.evicting.delete(b)
      })
      let outcomes: Awaited<typeof slept>
      try {
        outcomes = await abortable(slept, deadline)
      } catch {
        release() // the stop goes on; this request gives up its room
        slept.catch(() => undefined)
        throw this.refusal(target, full, 'no room freed within wake_timeout')
      }
      if (outcomes.every((o) => o.result === 'done' || o.result === 'asleep')) return release
      release() // the victim stayed awake: look again
    }
  }

  private reserve(unit: string, target: Backend): () => void {
    this.reserved.set(unit, target)
    return () => {
      if (this.reserved.get(unit) === target) this.reserved.delete(unit)
    }
  }

  private fullScopes(target: Backend): Scope[] {
    return this.scopes(target).filter((s) => this.inUse(s) >= s.cap)
  }

  private refusal(target: Backend, full: readonly Scope[], why: string): RelightError {
    const caps = describe(full)
    return new RelightError('RELIGHT_ERR_CAPACITY', `${target.info.name} is queued: ${caps} reached and ${why}`, {
      backend: target.info.name,
      retryAfter: this.retryAfter(target, full),
      reason: caps,
    })
  }

  /** Seconds until the soonest awake unit in every full scope could make room (see CAPACITY_RETRY_MIN_S). */
  private retryAfter(target: Backend, full: readonly Scope[]): number {
    const own = unitOf(target)
    let soonest = Infinity
    const units = this.awakeUnits((b) => full.every((s) => s.includes(b)))
    for (const [unit, b] of this.reserved) if (!units.has(unit) && full.every((s) => s.includes(b))) units.set(unit, [b])
    for (const [unit, members] of units) {
      if (unit === own) continue
      // A unit makes room when its last member may go; one being put to sleep, at once.
      // A member evicted for a wake whose reservation is held frees room for that wake only: not counted.
      let wait: number | undefined
      for (const b of members) {
        const forUnit = this.evicting.get(b)
        if (forUnit !== undefined && this.reserved.has(forUnit)) continue
        const each = b.phase === 'sleeping' || forUnit !== undefined ? 0 : b.evictableIn()
        wait = Math.max(wait ?? 0, each ?? Infinity)
      }
      if (wait !== undefined) soonest = Math.min(soonest, wait)
    }
    return Math.min(CAPACITY_RETRY_MAX_S, Math.max(CAPACITY_RETRY_MIN_S, Math.ceil(soonest / 1000)))
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

  /** Backends in every full scope being put to sleep right now, whose room nobody reserved. */
  private leaving(full: readonly Scope[]): Backend[] {
    return [...this.backends()].filter((b) => b.phase === 'sleeping' && !b.removed && !this.evicting.has(b) && full.every((s) => s.includes(b)))
  }

  /** The awake unit in every full scope whose members may all sleep early and were active least recently. */
  private leastRecentlyActive(full: readonly Scope[], except: string): Backend[] | undefined {
    let best: Backend[] | undefined
    let bestActivity = Infinity
    for (const [unit, members] of this.awakeUnits((b) => full.every((s) => s.includes(b)))) {
      if (unit === except || this.reserved.has(unit)) continue
      if (!members.every((b) => !this.evicting.has(b) && b.mayBeEvicted())) continue
      const activity = Math.max(...members.map((b) => b.lastActivity))
      if (activity < bestActivity) {
        best = members
        bestActivity = activity
      }
    }
    return best
  }
}

function describe(full: readonly Scope[]): string {
  return full.map((s) => `max_awake ${s.cap} (${s.name})`).join(', ')
}
