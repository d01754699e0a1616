/** The `check` lines every provider of the kit shares: which containers carry the domain label, and their unusable labels. */
import type { CheckResult, SleepMode } from '../../core/provider.js'
import { listContainers } from './container-inspect.js'
import { type ContainerApi, labelsOf, summaryName } from './containers.js'
import { type ClaimedElsewhere, claimedByNone, domainLabel, readLabels } from '../kit/labels.js'

/** `claimedElsewhere`: containers another provider drives (a Swarm task) are not this provider's to list. */
export async function checkLabels(api: ContainerApi, prefix: string, sleepModes: readonly SleepMode[], signal: AbortSignal, claimedElsewhere: ClaimedElsewhere = claimedByNone): Promise<CheckResult[]> {
  const results: CheckResult[] = []
  const label = domainLabel(prefix)
  try {
    const summaries = (await listContainers(api, { label: [label] }, signal)).filter((s) => claimedElsewhere(labelsOf(s)) === undefined)
    results.push({
      ok: true,
      message:
        summaries.length === 0
          ? `no container carries the ${label} label yet (label your containers to route them)`
          : `${summaries.length} container(s) labelled ${label}: ${summaries.map(summaryName).join(', ')}`,
    })
    for (const s of summaries) {
      for (const p of readLabels(labelsOf(s), prefix, sleepModes).problems) results.push({ ok: false, message: `container ${summaryName(s)}: ${p}` })
    }
  } catch (err) {
    results.push({ ok: false, message: `cannot list containers: ${(err as Error).message}` })
  }
  return results
}
