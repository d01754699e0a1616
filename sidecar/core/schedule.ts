/**
 * Weekly windows with a time zone (`awake_during`, `asleep_during`): `Mon-Fri 08:00-18:00
 * Europe/Berlin`, several joined by `;`. Wall-clock times in the zone; the platform (Intl and
 * Date.UTC) does every calendar and DST computation, this file none.
 *
 * Grammar of one window: `[days] HH:MM-HH:MM [zone]`
 * - days: `Mon` (or `Monday`), `Mon-Fri` (a range may wrap: `Fri-Mon`), lists `Mon,Wed,Sat-Sun`; left out: every day;
 * - times: 00:00–24:00; an end at or before the start runs past midnight into the next day
 *   (`Fri 22:00-02:00` is Friday 22:00 to Saturday 02:00); `00:00-24:00` is the whole day;
 * - zone: an IANA name (`Europe/Berlin`, `UTC`); left out: the sidecar's own time zone.
 */

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const
const FULL_DAY_NAMES = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'] as const
const MINUTE = 60_000
/** Windows are at most a week apart: boundaries are looked for this many local days ahead. */
const LOOKAHEAD_DAYS = 8
/** Windows in one schedule, at most. */
const MAX_WINDOWS = 64

interface Window {
  /** Local weekdays (0 = Sunday) on which the window starts. */
  readonly days: ReadonlySet<number>
  /** Minutes after local midnight. */
  readonly start: number
  /** Minutes after the start day's midnight; above 1440 when it runs past midnight. */
  readonly end: number
  readonly zone: Zone
}

/** One IANA zone with its formatter (made once per parsed schedule, not per call). */
class Zone {
  readonly name: string
  private readonly format: Intl.DateTimeFormat

  constructor(name: string) {
    // Throws RangeError for a zone the platform does not know.
    this.format = new Intl.DateTimeFormat('en-US', {
      timeZone: name,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    })
    this.name = this.format.resolvedOptions().timeZone
  }

  /** The wall clock at instant `t`, as if it were UTC (ms): local date and time arithmetic then uses Date.UTC. */
  wall(t: number): number {
    const p: Record<string, number> = {}
    for (const part of this.format.formatToParts(t)) if (part.type !== 'literal') p[part.type] = Number(part.value)
    return Date.UTC(p.year as number, (p.month as number) - 1, p.day as number, p.hour as number, p.minute as number, p.second as number)
  }

  /** The zone's offset from UTC at instant `t` (ms). */
  offset(t: number): number {
    const whole = Math.floor(t / 1000) * 1000
    return this.wall(whole) - whole
  }

  /**
   * Every instant when the wall clock shows `wall` (a wall time as if UTC): one, two for a time
   * shown twice (fall back), and for a time the clocks skip (spring forward) the instant they
   * jump past it (02:30 in a gap 02:00→03:00 is 03:00, when the new time begins).
   */
  instants(wall: number): number[] {
    // The zone's offsets around that day (a DST change is never closer than a day to another).
    const offsets = new Set([-86_400_000, 0, 86_400_000].map((d) => this.offset(wall + d)))
    const candidates = [...offsets].map((o) => wall - o).sort((a, b) => a - b)
    const shown = candidates.filter((c) => this.wall(c) === wall)
    if (shown.length > 0) return shown
    // Skipped: the first instant whose wall clock is at or past `wall`.
    let lo = candidates[0] as number
    let hi = candidates[candidates.length - 1] as number
    while (hi - lo > 1000) {
      const mid = lo + Math.floor((hi - lo) / 2000) * 1000
      if (this.wall(mid) >= wall) hi = mid
      else lo = mid
    }
    return [hi]
  }

  /** The instants in (from, to] where the offset changes (DST), found day by day then to the second. */
  transitions(from: number, to: number): number[] {
    const found: number[] = []
    for (let day = from; day < to; day += 86_400_000) {
      const next = Math.min(day + 86_400_000, to)
      if (this.offset(day) === this.offset(next)) continue
      let lo = day
      let hi = next
      const before = this.offset(day)
      while (hi - lo > 1000) {
        const mid = lo + Math.floor((hi - lo) / 2000) * 1000
        if (this.offset(mid) === before) lo = mid
        else hi = mid
      }
      found.push(hi)
    }
    return found
  }
}

export class Schedule {
  /** The text as written (status, logs). */
  readonly text: string
  private readonly windows: readonly Window[]

  private constructor(text: string, windows: readonly Window[]) {
    this.text = text
    this.windows = windows
  }

  /** Parse the text; a problem is thrown as an Error whose message says what was expected. */
  static parse(text: string, localZone?: string): Schedule {
    const parts = text
      .split(';')
      .map((p) => p.trim())
      .filter((p) => p !== '')
    if (parts.length === 0) throw new Error('expected windows such as "Mon-Fri 08:00-18:00 Europe/Berlin"')
    // Every window is checked on every sweep tick: a label with thousands would cost CPU each second.
    if (parts.length > MAX_WINDOWS) throw new Error(`${parts.length} windows: at most ${MAX_WINDOWS}`)
    const local = localZone ?? new Intl.DateTimeFormat().resolvedOptions().timeZone
    const zones = new Map<string, Zone>()
    const zoneOf = (name: string): Zone => {
      let zone = zones.get(name)
      if (zone === undefined) {
        try {
          zone = new Zone(name)
        } catch {
          throw new Error(`"${name}" is not a time zone the platform knows (expected an IANA name such as Europe/Berlin or UTC)`)
        }
        zones.set(name, zone)
      }
      return zone
    }
    const windows = parts.map((part) => parseWindow(part, (name) => zoneOf(name ?? local)))
    return new Schedule(parts.join('; '), windows)
  }

  /** The time zones its windows are in, as the platform names them (a window without one: the local zone). */
  zoneNames(): string[] {
    return [...new Set(this.windows.map((w) => w.zone.name))]
  }

  /** Compared and shown as written (reload compares configurations as JSON). */
  toJSON(): string {
    return this.text
  }

  /** Whether instant `t` (ms since the epoch) falls inside a window. */
  contains(t: number): boolean {
    return this.windows.some((w) => inWindow(w, t))
  }

  /**
   * The first instant after `t` where `contains` changes (the end of the window `t` is in, or
   * the start of the next one); undefined when it never changes (every day, all day).
   */
  nextChange(t: number): number | undefined {
    const now = this.contains(t)
    const candidates: number[] = []
    const zones = new Set<Zone>()
    for (const w of this.windows) {
      zones.add(w.zone)
      const wall = w.zone.wall(t)
      const midnight = wall - (((wall % 86_400_000) + 86_400_000) % 86_400_000)
      for (let day = -1; day <= LOOKAHEAD_DAYS; day++) {
        const dayStart = midnight + day * 86_400_000
        for (const at of [w.start, w.end]) {
          for (const c of w.zone.instants(dayStart + at * MINUTE)) if (c > t) candidates.push(c)
        }
      }
    }
    // A clock change can itself enter or leave a window (02:45 CEST → 02:00 CET inside 01:00-02:30).
    for (const zone of zones) candidates.push(...zone.transitions(t, t + LOOKAHEAD_DAYS * 86_400_000).filter((c) => c > t))
    candidates.sort((a, b) => a - b)
    for (const c of candidates) if (this.contains(c) !== now) return c
    return undefined
  }

  /** `Mon 08:00 Europe/Berlin`: instant `t` as the first window's zone shows it (for pages and errors). */
  describe(t: number): string {
    const zone = this.windows[0]?.zone
    if (zone === undefined) return new Date(t).toISOString()
    const wall = new Date(zone.wall(t))
    const day = DAY_NAMES[wall.getUTCDay()] as string
    const hh = String(wall.getUTCHours()).padStart(2, '0')
    const mm = String(wall.getUTCMinutes()).padStart(2, '0')
    return `${day[0]?.toUpperCase()}${day.slice(1)} ${hh}:${mm} ${zone.name}`
  }
}

function inWindow(w: Window, t: number): boolean {
  const wall = w.zone.wall(t)
  const minute = Math.floor((((wall % 86_400_000) + 86_400_000) % 86_400_000) / MINUTE)
  const weekday = new Date(wall).getUTCDay()
  if (w.days.has(weekday) && minute >= w.start && minute < Math.min(w.end, 1440)) return true
  // The previous day's window running past midnight.
  return w.end > 1440 && w.days.has((weekday + 6) % 7) && minute < w.end - 1440
}

function parseWindow(text: string, zone: (name: string | undefined) => Zone): Window {
  const words = text.split(/\s+/)
  const timeAt = words.findIndex((w) => /^\d{1,2}:\d{2}-\d{1,2}:\d{2}$/.test(w))
  if (timeAt < 0) throw new Error(`"${text}": expected a time range such as 08:00-18:00`)
  if (timeAt > 1 || words.length > timeAt + 2) throw new Error(`"${text}": expected [days] HH:MM-HH:MM [time zone], e.g. Mon-Fri 08:00-18:00 Europe/Berlin`)
  const days = timeAt === 1 ? parseDays(words[0] as string, text) : new Set([0, 1, 2, 3, 4, 5, 6])
  const [from, to] = (words[timeAt] as string).split('-') as [string, string]
  const start = minutes(from, text)
  let end = minutes(to, text)
  if (start === 1440) throw new Error(`"${text}": a window cannot start at 24:00`)
  if (end <= start) end += 1440
  return { days, start, end, zone: zone(words[timeAt + 1]) }
}

function minutes(hhmm: string, text: string): number {
  const [h, m] = hhmm.split(':').map(Number) as [number, number]
  if (h > 24 || m > 59 || (h === 24 && m !== 0)) throw new Error(`"${text}": ${hhmm} is not a time of day (00:00 to 24:00)`)
  return h * 60 + m
}

function parseDays(text: string, window: string): Set<number> {
  const days = new Set<number>()
  const day = (name: string): number => {
    const lower = name.toLowerCase()
    // Exactly a day's three letters or its full name: `Monkey` is not Monday.
    const i = (DAY_NAMES as readonly string[]).indexOf(lower.slice(0, 3))
    if (i < 0 || (lower.length !== 3 && lower !== FULL_DAY_NAMES[i])) throw new Error(`"${window}": "${name}" is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun, or the full name)`)
    return i
  }
  for (const item of text.split(',')) {
    const ends = item.split('-')
    if (ends.length > 2) throw new Error(`"${window}": "${item}" is not a day range (expected one "-", as in Mon-Fri; list several with ",": Mon-Wed,Sat)`)
    const [a, b] = ends
    if (a === undefined || a === '') throw new Error(`"${window}": expected days such as Mon-Fri or Sat,Sun`)
    const first = day(a)
    const last = b === undefined ? first : day(b)
    for (let d = first; ; d = (d + 1) % 7) {
      days.add(d)
      if (d === last) break
    }
  }
  return days
}

/**
 * What a backend's schedules say at instant `t`: `asleep` inside an asleep_during window (it wins
 * where both match), `awake` inside an awake_during window, else undefined (idle_timeout decides).
 */
export function scheduleAt(settings: { readonly awake_during?: Schedule | undefined; readonly asleep_during?: Schedule | undefined }, t: number): 'awake' | 'asleep' | undefined {
  if (settings.asleep_during?.contains(t) === true) return 'asleep'
  if (settings.awake_during?.contains(t) === true) return 'awake'
  return undefined
}
