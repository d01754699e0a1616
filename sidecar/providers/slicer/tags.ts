/**
 * Slicer tags → hosts and per-VM settings.
 *
 * A tag without `=` is a host the VM answers to, exactly as caddy-relight-slicervm reads it:
 *   `myapp.com`  exact host;   `myapp`  first label, only under `base_domains`
 *   (myapp.apps.example.com);   `*.myapp.com`  wildcard.
 * A tag `key=value` is a setting. Recognised keys:
 *   relight.port=3000           upstream port instead of app_port
 *   relight.sleep=pause|suspend|stop   (stop only for persistent VMs)
 *   relight.idle_timeout=10m    relight.wake_timeout=1m    and every other per-backend
 *   setting of the table in core/settings.ts, with the same bounds as in the YAML
 * Other `key=value` tags are left alone (they belong to someone else), except unknown
 * `relight.*` keys, which are reported so a typo does not go unnoticed.
 */
import { parseHostPattern } from '../../core/hosts.js'
import type { BackendSettings, SleepMode } from '../../core/provider.js'
import { readSettings, SETTING_KEYS, type SettingKey } from '../../core/settings.js'

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
  const settingText = new Map<SettingKey, { tag: string; value: string }>()
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
    const name = key.slice(TAG_PREFIX.length)
    if (name === 'port') {
      const n = /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN
      if (n >= 1 && n <= 65535) port = n
      else problems.push(`tag "${tag}": expected a port number 1-65535; ignored`)
    } else if ((SETTING_KEYS as readonly string[]).includes(name)) {
      settingText.set(name as SettingKey, { tag, value })
    } else {
      problems.push(`tag "${tag}": unknown setting ${key} (known: relight.port, ${SETTING_KEYS.map((k) => `relight.${k}`).join(', ')}); ignored`)
    }
  }
  const settings = readSettings(
    (k) => settingText.get(k)?.value,
    SLEEP,
    (k, _text, expected) => problems.push(`tag "${settingText.get(k)?.tag ?? k}": expected ${expected}; ignored`),
  )
  return { hosts, ...(port !== undefined ? { port } : {}), settings, problems }
}
