/**
 * Slicer tags → hosts and per-VM settings.
 *
 * A tag without `=` is a host the VM answers to, exactly as caddy-relight-slicervm reads it:
 *   `myapp.com`  exact host;   `myapp`  first label, only under `base_domains`
 *   (myapp.apps.example.com);   `*.myapp.com`  wildcard.
 * A tag `key=value` is a setting. Recognised keys:
 *   relight.port=3000           upstream port instead of app_port
 *   relight.sleep=pause|suspend|stop   (stop only for persistent VMs)
 *   relight.idle_timeout=10m    relight.wake_timeout=1m
 *   relight.strategy=blocking|waiting_page    relight.readiness=tcp|http:/path
 * Other `key=value` tags are left alone (they belong to someone else), except unknown
 * `relight.*` keys, which are reported so a typo does not go unnoticed.
 */
import { parseDuration } from '../../config/duration.js'
import { parseHostPattern } from '../../core/hosts.js'
import type { BackendSettings, Readiness, SleepMode, Strategy } from '../../core/provider.js'

export const TAG_PREFIX = 'relight.'

export interface ParsedTags {
  readonly hosts: string[]
  readonly port?: number
  readonly settings: BackendSettings
  /** Human sentences about tags that were ignored. */
  readonly problems: string[]
}

const SLEEP: readonly SleepMode[] = ['pause', 'suspend', 'stop']

export function parseTags(tags: readonly unknown[] | undefined): ParsedTags {
  const hosts: string[] = []
  const settings: { -readonly [K in keyof BackendSettings]: BackendSettings[K] } = {}
  const problems: string[] = []
  let port: number | undefined
  for (const raw of tags ?? []) {
    if (typeof raw !== 'string') continue
    const tag = raw.trim()
    if (tag === '') continue
    const eq = tag.indexOf('=')
    if (eq === -1) {
      if (parseHostPattern(tag)) hosts.push(tag)
      else problems.push(`tag "${tag}" is not a host name, a wildcard (*.example.com) or a first label; ignored`)
      continue
    }
    const key = tag.slice(0, eq).trim().toLowerCase()
    const value = tag.slice(eq + 1).trim()
    if (!key.startsWith(TAG_PREFIX)) continue
    const bad = (expected: string) => problems.push(`tag "${tag}": expected ${expected}; ignored`)
    switch (key.slice(TAG_PREFIX.length)) {
      case 'port': {
        const n = /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN
        if (n >= 1 && n <= 65535) port = n
        else bad('a port number 1-65535')
        break
      }
      case 'sleep':
        if ((SLEEP as readonly string[]).includes(value)) settings.sleep = value as SleepMode
        else bad('pause, suspend or stop')
        break
      case 'idle_timeout':
      case 'wake_timeout':
      case 'max_request_duration': {
        const ms = parseDuration(value)
        if (ms !== undefined && ms > 0) settings[key.slice(TAG_PREFIX.length) as 'idle_timeout' | 'wake_timeout' | 'max_request_duration'] = ms
        else bad('a duration such as 30s or 5m')
        break
      }
      case 'strategy':
        if (value === 'blocking' || value === 'waiting_page') settings.strategy = value as Strategy
        else bad('blocking or waiting_page')
        break
      case 'readiness':
        if (value === 'tcp' || /^http:\/\S*$/.test(value)) settings.readiness = value as Readiness
        else bad('tcp or http:/path')
        break
      default:
        problems.push(`tag "${tag}": unknown setting ${key} (known: relight.port, relight.sleep, relight.idle_timeout, relight.wake_timeout, relight.max_request_duration, relight.strategy, relight.readiness); ignored`)
    }
  }
  return { hosts, ...(port !== undefined ? { port } : {}), settings, problems }
}
