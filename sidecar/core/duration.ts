const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y

/**
 * Parse `500ms`, `30s`, `5m`, `1h30m`, `2d` into milliseconds. A bare number is refused: the unit
 * is what tells a reader whether `300` meant seconds or milliseconds.
 */
export function parseDuration(text: string): number | undefined {
  const s = text.trim()
  if (s === '' || s === '0') return s === '0' ? 0 : undefined
  let total = 0
  PART.lastIndex = 0
  while (PART.lastIndex < s.length) {
    const start = PART.lastIndex
    const m = PART.exec(s)
    if (!m || m.index !== start) return undefined
    total += Number(m[1]) * (UNITS[m[2] as string] as number)
  }
  return Math.round(total)
}

