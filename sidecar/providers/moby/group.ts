/**
 * Group dependencies, for every provider of the kit (Docker, Podman): containers sharing a group
 * (`<prefix>.group`, else the compose project) wake and sleep as one unit, like Docksal. The core
 * wakes and sleeps the routed members (they carry `<prefix>.domain`); this wakes the group's
 * non-routed containers (databases, workers) before a routed member, and puts them to sleep once
 * no routed member of the group runs. The provider says how one container wakes and sleeps.
 */
import type { Logger } from 'pino'
import { toRelightError } from '../../core/errors.js'
import type { SleepMode } from '../../core/provider.js'
import { listContainers } from './container-inspect.js'
import { type ContainerApi, type ContainerSummary, labelsOf, summaryName } from './containers.js'
import { KeyedLock } from './keyed-lock.js'
import { type ClaimedElsewhere, claimedByNone, COMPOSE_PROJECT_LABEL, groupOf, isRouted } from '../kit/labels.js'

export interface MemberOps {
  /** Wake one dependency; resolves once it runs (healthy, where the provider waits for health). */
  wake(id: string, signal: AbortSignal): Promise<void>
  sleep(id: string, mode: SleepMode, signal: AbortSignal): Promise<void>
}

const AWAKE = new Set(['running', 'restarting'])

export class GroupDependencies {
  private readonly lock = new KeyedLock()

  constructor(
    private readonly api: ContainerApi,
    private readonly prefix: string,
    private readonly log: Logger,
    private readonly ops: MemberOps,
    /** Containers another provider drives (a Swarm task) are never a member. */
    private readonly claimedElsewhere: ClaimedElsewhere = claimedByNone,
  ) {}

  /**
   * Wake the group's dependencies, then run `wakeMember`, under the group's lock: a sleep of
   * the group's last routed member cannot put the dependencies back to sleep in between.
   */
  wakeWith<T>(group: string | undefined, signal: AbortSignal, wakeMember: () => Promise<T>): Promise<T> {
    if (group === undefined) return wakeMember()
    return this.lock.run(group, async () => {
      const deps = (await this.members(group, signal)).filter((c) => !isRouted(labelsOf(c), this.prefix))
      const asleep = deps.filter((c) => c.State !== 'running')
      if (asleep.length > 0) {
        this.log.info({ group, containers: asleep.map(summaryName) }, 'waking group dependencies')
        await Promise.all(asleep.map((c) => this.ops.wake(c.Id, signal)))
      }
      return wakeMember()
    })
  }

  /**
   * After a routed member slept: when no routed member of the group runs, sleep the others too.
   * The member itself is asleep already, so a dependency that fails to sleep is logged, not
   * thrown (else the core would try fallback_sleep on a container already asleep).
   */
  async afterMemberSlept(group: string | undefined, mode: SleepMode, signal: AbortSignal): Promise<void> {
    if (group === undefined) return
    await this.lock
      .run(group, async () => {
        const members = await this.members(group, signal)
        if (members.some((c) => isRouted(labelsOf(c), this.prefix) && AWAKE.has(c.State ?? ''))) return
        const awake = members.filter((c) => !isRouted(labelsOf(c), this.prefix) && (AWAKE.has(c.State ?? '') || (mode !== 'pause' && c.State === 'paused')))
        if (awake.length === 0) return
        this.log.info({ group, mode, containers: awake.map(summaryName) }, 'group asleep; sleeping its dependencies')
        await Promise.all(awake.map((c) => this.ops.sleep(c.Id, mode, signal)))
      })
      .catch((err: unknown) => {
        const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED', { provider: this.api.engine.name })
        this.log.warn({ group, code: error.code, err: error.message }, "could not put the group's dependencies to sleep; they stay up until the next time the group sleeps")
      })
  }

  /** The group's containers, routed or not, in any state. */
  async members(group: string, signal: AbortSignal): Promise<ContainerSummary[]> {
    const [explicit, compose] = await Promise.all([
      listContainers(this.api, { label: [`${this.prefix}.group=${group}`] }, signal),
      listContainers(this.api, { label: [`${COMPOSE_PROJECT_LABEL}=${group}`] }, signal),
    ])
    const byId = new Map<string, ContainerSummary>()
    for (const c of [...explicit, ...compose]) {
      const labels = labelsOf(c)
      if (groupOf(labels, this.prefix) === group && this.claimedElsewhere(labels) === undefined) byId.set(c.Id, c)
    }
    return [...byId.values()]
  }
}
