/**
 * `waiting_page_template`: an operator's own waiting page, an HTML file with `{{host}}` and
 * `{{retry_after}}` placeholders (both HTML-escaped when filled in). The loader and the renderer
 * live here (the value's zod type is in config/types.ts, the schema's leaf); it is accepted in `defaults`, in
 * provider blocks and in app entries, i.e. only from the configuration file: a container label
 * or a VM tag cannot make the sidecar read and publish a file of its choosing.
 *
 * Files are read and checked once, when the configuration is loaded; an unreadable file or an
 * unknown placeholder is a configuration error naming the key.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { RelightError } from '../core/errors.js'
import type { BackendSettings } from '../core/provider.js'
import { escapeHtml, waitingPage } from './html.js'

/** The setting's name, in YAML and in BackendSettings. */
export const WAITING_PAGE_TEMPLATE = 'waiting_page_template'

const MAX_TEMPLATE_BYTES = 256 * 1024
const PLACEHOLDER = /\{\{\s*([A-Za-z_]+)\s*\}\}/g
const KNOWN = new Set(['host', 'retry_after'])

type Part = string | { readonly name: 'host' | 'retry_after' }

export class WaitingPages {
  private readonly templates = new Map<string, Part[]>()

  private constructor(private readonly defaultTemplate: string | undefined) {}

  /**
   * Read every `waiting_page_template` in the configuration (wherever it is set) relative to
   * `baseDir`. Throws RELIGHT_ERR_CONFIG listing each problem with its key.
   */
  static load(config: unknown, baseDir: string): WaitingPages {
    const found: { path: string; value: string }[] = []
    collect(config, '', found)
    const defaults = (config as { defaults?: Record<string, unknown> }).defaults
    const pages = new WaitingPages(typeof defaults?.[WAITING_PAGE_TEMPLATE] === 'string' ? (defaults[WAITING_PAGE_TEMPLATE] as string) : undefined)
    const problems: string[] = []
    for (const { path, value } of found) {
      if (pages.templates.has(value)) continue
      try {
        pages.templates.set(value, parse(readTemplate(resolve(baseDir, value))))
      } catch (err) {
        problems.push(`${path}: ${(err as Error).message}`)
      }
    }
    if (problems.length > 0) throw new RelightError('RELIGHT_ERR_CONFIG', `waiting page template: ${problems.join('; ')}`)
    return pages
  }

  /** The waiting page for a backend: its own template, else the default one, else the built-in page. */
  render(settings: BackendSettings, host: string, retryAfterSeconds: number): string {
    const name = settings.waiting_page_template ?? this.defaultTemplate
    const parts = name === undefined ? undefined : this.templates.get(name)
    if (parts === undefined) return waitingPage(host, retryAfterSeconds)
    let out = ''
    for (const part of parts) out += typeof part === 'string' ? part : escapeHtml(part.name === 'host' ? host : String(retryAfterSeconds))
    return out
  }
}

function collect(value: unknown, path: string, out: { path: string; value: string }[]): void {
  if (Array.isArray(value)) value.forEach((v, i) => collect(v, `${path}[${i}]`, out))
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const at = path ? `${path}.${k}` : k
      if (k === WAITING_PAGE_TEMPLATE && typeof v === 'string') out.push({ path: at, value: v })
      else collect(v, at, out)
    }
  }
}

function readTemplate(file: string): string {
  let buf: Buffer
  try {
    buf = readFileSync(file)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new Error(code === 'ENOENT' ? `${file} not found` : `cannot read ${file}: ${(err as Error).message}`)
  }
  if (buf.length > MAX_TEMPLATE_BYTES) throw new Error(`${file} is larger than ${MAX_TEMPLATE_BYTES / 1024} KiB`)
  return buf.toString('utf8')
}

function parse(text: string): Part[] {
  const parts: Part[] = []
  let last = 0
  for (const m of text.matchAll(PLACEHOLDER)) {
    const name = m[1] as string
    if (!KNOWN.has(name)) throw new Error(`unknown placeholder {{${name}}}; use {{host}} and {{retry_after}}`)
    parts.push(text.slice(last, m.index), { name: name as 'host' | 'retry_after' })
    last = m.index + m[0].length
  }
  parts.push(text.slice(last))
  return parts
}
