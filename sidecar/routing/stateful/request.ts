/** What the stateful router reads from a forward_auth request: the token in the path, one cookie. */

/**
 * The token of a Doors system path `/~/{token}` or `/~/{token}/…`, from Caddy's
 * `X-Forwarded-Uri` (path and query). undefined when the path is not a system path — including
 * `/~/` and `/~//x`, whose token segment is empty: doors-caddy routes those as ordinary
 * requests, and so do we. Percent-escapes are decoded first, as Go's `r.URL.Path` is.
 */
export function tokenFromUri(uri: string | undefined): string | undefined {
  if (uri === undefined || uri.charCodeAt(0) !== 0x2f /* / */) return undefined
  let path = uri
  const q = path.indexOf('?')
  if (q !== -1) path = path.slice(0, q)
  if (path.includes('%')) {
    try {
      path = decodeURIComponent(path)
    } catch {
      return undefined // malformed escapes: Go's URL parser rejects the request earlier
    }
  }
  if (path.length <= 3 || !path.startsWith('/~/')) return undefined
  const slash = path.indexOf('/', 3)
  if (slash === -1) return path.slice(3)
  if (slash === 3) return undefined
  return path.slice(3, slash)
}

/**
 * The value of cookie `name` in a Cookie header (several headers arrive joined by `; `), the
 * first one when repeated, surrounding double quotes removed — what Go's `r.Cookie(name)` gives.
 */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  let from = 0
  while (from < header.length) {
    let end = header.indexOf(';', from)
    if (end === -1) end = header.length
    const eq = header.indexOf('=', from)
    if (eq !== -1 && eq < end && header.slice(from, eq).trim() === name) {
      let value = header.slice(eq + 1, end).trim()
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
      return value
    }
    from = end + 1
  }
  return undefined
}
