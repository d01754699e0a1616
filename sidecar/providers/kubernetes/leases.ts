/**
 * Several sidecars in front of one cluster share each workload's last activity in one
 * `coordination.k8s.io/v1` Lease (`relight-<kind>-<name>`, in the workload's namespace):
 *
 * - a sidecar that saw traffic writes `spec.renewTime` (the newest activity wins: a write never
 *   moves it back) and `spec.holderIdentity` (who saw it), at most every idle_timeout/4;
 * - a sidecar that wants to scale a workload to 0 reads the Lease. It refuses when renewTime is
 *   younger than idle_timeout, when another sidecar marked a scale-down since the last activity,
 *   or when it cannot read or write the Lease. Otherwise it writes its scale-down mark with the
 *   resourceVersion it read (a precondition: if anyone renewed meanwhile the write answers 409
 *   and it refuses), and only then scales.
 *
 * Every refusal is RELIGHT_ERR_SLEEP_REFUSED: the core keeps the workload awake and asks again
 * after another idle_timeout. Timestamps come from each sidecar's clock: keep clocks in sync (NTP).
 */
import { RelightError, isRelightError } from '../../core/errors.js'
import type { KubeClient } from './client.js'
import { leaseName, type WorkloadRef, workloadId } from './workloads.js'

/** The workload a Lease belongs to: Kubernetes deletes the Lease when the workload is deleted. */
export interface LeaseOwner {
  readonly apiVersion: string
  readonly kind: string
  readonly name: string
  readonly uid: string
}

export interface Lease {
  apiVersion?: string
  kind?: string
  metadata: {
    name: string
    namespace?: string
    resourceVersion?: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
    ownerReferences?: LeaseOwner[]
  }
  spec?: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number }
}

/** Annotation on the Lease: `<identity> <RFC 3339 time>` of the last scale-down decision. */
export const SCALE_DOWN_ANNOTATION = 'relight.scale-down'
const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'relight-sidecar' }
const RENEW_ATTEMPTS = 4

/** RFC 3339 with microseconds, as the API's MicroTime expects. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
}

export function parseTime(text: string | undefined): number | undefined {
  if (!text) return undefined
  const ms = Date.parse(text)
  return Number.isFinite(ms) ? ms : undefined
}

export function parseMark(text: string | undefined): { by: string; at: number } | undefined {
  if (!text) return undefined
  const space = text.lastIndexOf(' ')
  const at = parseTime(text.slice(space + 1))
  return space > 0 && at !== undefined ? { by: text.slice(0, space), at } : undefined
}

export function leasePath(ref: WorkloadRef, name?: string): string {
  return `/apis/coordination.k8s.io/v1/namespaces/${ref.namespace}/leases${name === undefined ? '' : `/${encodeURIComponent(name)}`}`
}

const refused = (ref: WorkloadRef, why: string, cause?: unknown) =>
  new RelightError('RELIGHT_ERR_SLEEP_REFUSED', `${workloadId(ref)} stays up: ${why}`, { backend: workloadId(ref), provider: 'kubernetes' }, cause === undefined ? {} : { cause })

export class SharedActivity {
  /** Workloads whose last activity write failed: never scaled down until a write succeeds. */
  private readonly unwritten = new Set<string>()

  constructor(
    private readonly client: KubeClient,
    readonly identity: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** Read the Lease; undefined when it does not exist. */
  async read(ref: WorkloadRef, signal: AbortSignal): Promise<Lease | undefined> {
    try {
      return await this.client.json<Lease>('GET', leasePath(ref, leaseName(ref)), { signal })
    } catch (err) {
      if (this.client.statusOf(err) === 404) return undefined
      throw err
    }
  }

  /** Record that this sidecar saw traffic for `ref` at `at` (ms since the epoch). */
  async renew(ref: WorkloadRef, at: number, signal: AbortSignal, owner?: LeaseOwner): Promise<void> {
    const id = workloadId(ref)
    try {
      for (let attempt = 1; ; attempt++) {
        const lease = await this.read(ref, signal)
        try {
          if (!lease) {
            await this.client.json('POST', leasePath(ref), { body: this.fresh(ref, { holderIdentity: this.identity, renewTime: microTime(at) }, owner), signal })
          } else {
            const previous = parseTime(lease.spec?.renewTime) ?? -Infinity
            const mark = parseMark(lease.metadata.annotations?.[SCALE_DOWN_ANNOTATION])
            if (previous >= at && !(mark && mark.at < at)) break // a newer activity is recorded already
            const annotations = { ...(lease.metadata.annotations ?? {}) }
            if (mark && mark.at < at) delete annotations[SCALE_DOWN_ANNOTATION] // traffic since that scale-down
            await this.client.json('PUT', leasePath(ref, lease.metadata.name), {
              body: {
                ...lease,
                metadata: { ...lease.metadata, annotations },
                spec: { ...lease.spec, holderIdentity: previous >= at ? lease.spec?.holderIdentity : this.identity, renewTime: microTime(Math.max(previous, at)) },
              },
              signal,
            })
          }
          break
        } catch (err) {
          // 409: someone wrote it between our read and write (or created it first): read again.
          if (this.client.statusOf(err) !== 409 || attempt >= RENEW_ATTEMPTS) throw err
        }
      }
      this.unwritten.delete(id)
    } catch (err) {
      this.unwritten.add(id)
      throw err
    }
  }

  /**
   * Decide and record a scale-down: resolves when this sidecar may scale `ref` to 0, rejects
   * with RELIGHT_ERR_SLEEP_REFUSED otherwise (see the file comment).
   */
  async claimScaleDown(ref: WorkloadRef, idleTimeout: number, signal: AbortSignal, owner?: LeaseOwner): Promise<void> {
    if (this.unwritten.has(workloadId(ref))) throw refused(ref, 'the last write of its shared activity failed (it is written again on the next traffic)')
    let lease: Lease | undefined
    try {
      lease = await this.read(ref, signal)
    } catch (err) {
      throw refused(ref, `cannot read its shared activity (Lease ${leaseName(ref)}): ${(err as Error).message}`, err)
    }
    const now = this.now()
    const mark = `${this.identity} ${microTime(now)}`
    try {
      if (!lease) {
        await this.client.json('POST', leasePath(ref), { body: this.fresh(ref, { holderIdentity: this.identity }, owner, mark), signal })
        return
      }
      const renewed = parseTime(lease.spec?.renewTime)
      if (renewed !== undefined && now - renewed < idleTimeout) {
        throw refused(ref, `${lease.spec?.holderIdentity ?? 'another sidecar'} saw traffic ${Math.max(0, Math.round((now - renewed) / 1000))} s ago`)
      }
      const other = parseMark(lease.metadata.annotations?.[SCALE_DOWN_ANNOTATION])
      if (other && other.by !== this.identity && other.at > (renewed ?? -Infinity) && now - other.at < Math.max(idleTimeout, 60_000)) {
        throw refused(ref, `${other.by} scaled it down ${Math.max(0, Math.round((now - other.at) / 1000))} s ago`)
      }
      await this.client.json('PUT', leasePath(ref, lease.metadata.name), {
        body: { ...lease, metadata: { ...lease.metadata, annotations: { ...(lease.metadata.annotations ?? {}), [SCALE_DOWN_ANNOTATION]: mark } } },
        signal,
      })
    } catch (err) {
      if (isRelightError(err, 'RELIGHT_ERR_SLEEP_REFUSED')) throw err
      if (this.client.statusOf(err) === 409) throw refused(ref, 'another sidecar wrote its shared activity at the same moment', err)
      throw refused(ref, `cannot write its shared activity (Lease ${leaseName(ref)}): ${(err as Error).message}`, err)
    }
  }

  /** Forget a workload (deleted). */
  forget(ref: WorkloadRef): void {
    this.unwritten.delete(workloadId(ref))
  }

  private fresh(ref: WorkloadRef, spec: Lease['spec'], owner?: LeaseOwner, mark?: string): Lease {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: leaseName(ref),
        namespace: ref.namespace,
        labels: { ...MANAGED_BY },
        ...(mark ? { annotations: { [SCALE_DOWN_ANNOTATION]: mark } } : {}),
        ...(owner ? { ownerReferences: [{ ...owner }] } : {}),
      },
      spec: spec ?? {},
    }
  }
}
