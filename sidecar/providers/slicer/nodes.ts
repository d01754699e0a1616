/** Slicer nodes → BackendInfo: state, upstream, host group membership, settings. */
import { isIP } from 'node:net'
import type { BackendInfo, BackendSettings, BackendState, SleepMode } from '../../core/provider.js'
import type { SlicerNode } from './client.js'
import type { SlicerConfig } from './config.js'
import { parseTags } from './tags.js'
import { settingsFrom } from '../../core/settings.js'

/** What the provider knows about a routed node since the last list or its own operation. */
export interface KnownNode {
  readonly node: SlicerNode
  readonly info: BackendInfo
  readonly persistent: boolean
}

/**
 * The node's host group: the `hostgroup` field, else the Slicer naming rule `<group>-<n>`
 * (GET /nodes has carried status but not always the group; GET /hostgroup/{g}/nodes the
 * reverse, so one call to /nodes is what works).
 */
export function nodeGroup(node: SlicerNode): string | undefined {
  if (typeof node.hostgroup === 'string' && node.hostgroup !== '') return node.hostgroup
  return /^(.+)-\d+$/.exec(node.hostname)?.[1]
}

/** `192.168.137.2/24` → `192.168.137.2`; undefined when not an IP address. */
export function nodeAddress(ip: string | undefined): string | undefined {
  if (typeof ip !== 'string') return undefined
  const bare = ip.trim().replace(/\/\d{1,3}$/, '')
  return isIP(bare) === 0 ? undefined : bare
}

/**
 * Status → state. Slicer reports Running, Paused or Stopped; a VM suspended to disk also shows
 * as stopped, so `suspended` says it was this provider that suspended it (restore, not relaunch).
 */
export function nodeState(status: string | undefined, lastSleep: SleepMode | undefined): BackendState {
  switch ((status ?? '').toLowerCase()) {
    case 'running':
      return 'running'
    case 'paused':
      return 'paused'
    case 'suspended':
      return 'suspended'
    case 'stopped':
    case 'shutdown':
      return lastSleep === 'suspend' ? 'suspended' : 'stopped'
    default:
      return 'unknown'
  }
}

export interface NodeView {
  readonly info: BackendInfo
  readonly persistent: boolean
  /** Tag problems and sleep-mode replacements to log once. */
  readonly warnings: string[]
}

export function nodeToBackend(node: SlicerNode, config: SlicerConfig, lastSleep: SleepMode | undefined): NodeView {
  const tags = parseTags(node.tags)
  const warnings = [...tags.problems]
  const persistent = node.persistent === true
  const address = nodeAddress(node.ip)
  const port = tags.port ?? config.app_port
  let sleep: SleepMode = tags.settings.sleep ?? config.sleep ?? 'pause'
  if (sleep === 'stop' && !persistent) {
    warnings.push('relight.sleep=stop needs a persistent VM (Slicer relaunches only those); this VM is paused instead')
    sleep = 'pause'
  }
  const settings: BackendSettings = {
    ...settingsFrom(config),
    ...tags.settings,
    sleep,
    fallback_sleep: config.fallback_sleep ?? 'pause',
  }
  const group = nodeGroup(node)
  return {
    persistent,
    warnings,
    info: {
      id: node.hostname,
      name: node.hostname,
      hosts: tags.hosts,
      state: nodeState(node.status, lastSleep),
      upstreams: address === undefined ? [] : [`${address.includes(':') ? `[${address}]` : address}:${port}`],
      settings,
      details: {
        hostname: node.hostname,
        ...(group !== undefined ? { hostgroup: group } : {}),
        ...(address !== undefined ? { ip: address } : {}),
        persistent,
        ...(typeof node.created_at === 'string' ? { created_at: node.created_at } : {}),
        ...(typeof node.status === 'string' ? { status: node.status } : {}),
      },
    },
  }
}
