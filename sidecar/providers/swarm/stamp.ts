/** The labels every write of this sidecar's activity sets (wake, activity): one place, one format. */
import type { SharedLabels } from './labels.js'
import { activityToken } from './labels.js'

/**
 * A new activity token (`ago_ms` = how long before this write the last request here was), and
 * for one release the compat `last_activity` (wall clock; older sidecars read it, we never do).
 */
export function stampActivity(labels: Record<string, string>, names: SharedLabels, identity: string, agoMs: number): void {
  labels[names.activity] = activityToken(identity, agoMs)
  labels[names.lastActivity] = new Date(Date.now() - Math.max(0, agoMs)).toISOString()
}
