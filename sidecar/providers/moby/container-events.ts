/**
 * What a container event means to the registry, for every provider of the kit: the container
 * is inspected again (its current state, not the event's: a late event never rolls the registry
 * back) and reported as an upsert, or a remove when it is gone or no longer ours. Bursts of
 * events coalesce per container: while one inspect runs, later events ask for one more.
 * A failure other than "gone" asks the registry for a resync (the truth).
 */
import { isRelightError } from '../../core/errors.js'
import type { BackendInfo, ProviderEvent } from '../../core/provider.js'
import { inspectContainer } from './container-inspect.js'
import type { ContainerApi, ContainerInspect } from './containers.js'
import type { MobyEvent } from './events.js'

export interface ContainerEventsOptions {
  readonly api: ContainerApi
  /** Inspect → what the registry knows; undefined when the container is not (or no longer) ours. */
  readonly toInfo: (c: ContainerInspect) => BackendInfo | undefined
  /** Actions after which the container is gone (Docker `destroy`, libpod `remove`). */
  readonly removeOn: ReadonlySet<string>
  /** Actions after which the container is inspected again; others are ignored. */
  readonly refreshOn: ReadonlySet<string>
  /**
   * The provider's own reading of a fresh inspect, before its upsert, with the actions seen
   * since the last one (Docker: a `die` it did not cause is reported as a crash).
   */
  readonly inspected?: (c: ContainerInspect, info: BackendInfo, actions: ReadonlySet<string>, emit: (event: ProviderEvent) => void) => void
  /** Told when a container is gone (the provider forgets what it kept about it). */
  readonly removed?: (id: string) => void
}

export class ContainerEvents {
  /** Containers being inspected → actions seen meanwhile (undefined: none, no second run). */
  private readonly running = new Map<string, Set<string> | undefined>()

  constructor(private readonly options: ContainerEventsOptions) {}

  handle(event: MobyEvent, emit: (event: ProviderEvent) => void, signal: AbortSignal): void {
    const id = event.Actor?.ID ?? event.id
    const action = event.Action ?? event.status ?? ''
    if (!id) return
    if (this.options.removeOn.has(action)) {
      this.options.removed?.(id)
      emit({ type: 'remove', id })
      return
    }
    if (!this.options.refreshOn.has(action)) return
    if (this.running.has(id)) {
      const later = this.running.get(id) ?? new Set<string>()
      later.add(action)
      this.running.set(id, later) // run once more when the current one ends
      return
    }
    void this.refresh(id, new Set([action]), emit, signal)
  }

  private async refresh(id: string, actions: ReadonlySet<string>, emit: (event: ProviderEvent) => void, signal: AbortSignal): Promise<void> {
    this.running.set(id, undefined)
    try {
      const c = await inspectContainer(this.options.api, id, signal)
      const info = this.options.toInfo(c)
      if (signal.aborted) return
      if (!info) {
        this.options.removed?.(id)
        emit({ type: 'remove', id })
      } else {
        this.options.inspected?.(c, info, actions, emit)
        emit({ type: 'upsert', backend: info })
      }
    } catch (err) {
      if (signal.aborted) return
      if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND')) {
        this.options.removed?.(id)
        emit({ type: 'remove', id })
      } else emit({ type: 'resync' })
    } finally {
      const later = this.running.get(id)
      this.running.delete(id)
      if (later && !signal.aborted) void this.refresh(id, later, emit, signal)
    }
  }
}
