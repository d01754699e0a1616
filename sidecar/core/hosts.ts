import { domainToASCII, domainToUnicode } from 'node:url'

/** Longest Host header we look at; anything longer is rejected before any parsing. */
const MAX_RAW_HOST = 1024
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/**
 * Normalise a Host header or a domain to the form the host index uses: lower-case ASCII (IDNA),
 * no port, no trailing dot. Returns undefined for anything that is not a valid DNS name
 * (IP literals in brackets, empty labels, illegal characters, over-long names or labels).
 */
export function normalizeHost(raw: string | undefined): string | undefined {
  if (!raw || raw.length > MAX_RAW_HOST) return undefined
  let host = raw.trim()
  if (host.startsWith('[')) return undefined // IPv6 literal: not a DNS name
  const colon = host.lastIndexOf(':')
  if (colon !== -1) {
    const port = host.slice(colon + 1)
    if (!/^\d{0,5}$/.test(port)) return undefined
    host = host.slice(0, colon)
  }
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (host.length === 0) return undefined
  // Fast path: plain ASCII needs no IDNA mapping.
  let ascii = /^[\x21-\x7e]+$/.test(host) ? host.toLowerCase() : domainToASCII(host)
  if (!ascii) return undefined
  if (ascii.endsWith('.')) ascii = ascii.slice(0, -1)
  return isDnsName(ascii) ? ascii : undefined
}

/** A lower-case ASCII DNS host name: 1–253 chars, labels 1–63 of letters, digits, inner hyphens. */
export function isDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false
  for (const label of name.split('.')) {
    if (!LABEL.test(label)) return false
  }
  return true
}

/**
 * Why `name` is not the canonical spelling of a DNS name, or undefined when it is: lower-case
 * LDH labels, IDN labels in their A-label (`xn--`) form that round-trips through IDNA, no
 * trailing dot, no port, nothing that only matches after mapping (upper case, U-labels,
 * fullwidth or ideographic dots, ignored code points, empty labels). On-demand TLS approves
 * only this spelling, so one site can never be issued more than one certificate per name.
 */
export function canonicalHostProblem(name: string): string | undefined {
  if (name.length > MAX_RAW_HOST) return 'not a valid DNS name'
  if (!isDnsName(name)) {
    const canonical = normalizeHost(name)
    return canonical === undefined || canonical === name
      ? 'not a valid DNS name'
      : `not in canonical form (lower-case ASCII, IDN as xn-- A-labels, no trailing dot, no port): ${canonical}`
  }
  if (name.includes('xn--') && (domainToASCII(name) !== name || domainToASCII(domainToUnicode(name)) !== name)) {
    return 'not a valid IDN A-label (it does not round-trip through IDNA)'
  }
  return undefined
}

export type HostPattern =
  | { kind: 'exact'; name: string }
  | { kind: 'wildcard'; suffix: string } // `*.example.com` → suffix `example.com`
  | { kind: 'label'; label: string } // first-label name, only under base_domains

/** Parse a declared host (label, config entry, tag). Returns undefined when it is not valid. */
export function parseHostPattern(declared: string): HostPattern | undefined {
  const text = declared.trim()
  if (text.startsWith('*.')) {
    const suffix = normalizeHost(text.slice(2))
    return suffix ? { kind: 'wildcard', suffix } : undefined
  }
  const name = normalizeHost(text)
  if (!name) return undefined
  return name.includes('.') ? { kind: 'exact', name } : { kind: 'label', label: name }
}

/** True for an `http://` URL to anything but loopback: a bearer secret sent there crosses the network in clear. */
export function plainHttpToRemote(url: string): boolean {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return false
  }
  if (u.protocol !== 'http:') return false
  const host = u.hostname.replace(/^\[|\]$/g, '')
  return !(host === 'localhost' || host.endsWith('.localhost') || host === '::1' || /^127\./.test(host))
}
