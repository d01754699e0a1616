/** What every benchmark section receives from run.ts. */
export interface BenchContext {
  /** Work directory for configs, sockets and logs of this run. */
  readonly dir: string
  readonly quick: boolean
  /** Seconds per wrk run. */
  readonly seconds: number
  /** Alternation rounds (a, b, c, a, b, c…). */
  readonly rounds: number
  readonly connections: number
  readonly threads: number
  /** Hot-path set-ups to run (subset of HOT_SETUPS). */
  readonly setups: readonly string[]
  /** Another build's dist/sidecar/main.js, measured as set-up `c0` beside `c` (before/after). */
  readonly baseline?: string
  /** Progress line on stderr. */
  note(message: string): void
}

export class Skip extends Error {
  constructor(readonly reason: string) {
    super(reason)
  }
}
