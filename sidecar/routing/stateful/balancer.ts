/** How a stateful site spreads new sessions (requests without a usable cookie) over its upstreams. */

export const LB_POLICIES = ['random', 'round_robin', 'least_requests'] as const
export type LbPolicy = (typeof LB_POLICIES)[number]

export interface Balancer {
  /** Index of the upstream for a new session. */
  pick(): number
  /** A request was routed to upstream `i` (any kind: token, cookie or new session). */
  record(i: number): void
}

export function createBalancer(policy: LbPolicy, size: number, now: () => number = Date.now): Balancer {
  switch (policy) {
    case 'random':
      return { pick: () => Math.floor(Math.random() * size), record: () => undefined }
    case 'round_robin': {
      let next = 0
      return {
        pick: () => {
          const i = next
          next = (next + 1) % size
          return i
        },
        record: () => undefined,
      }
    }
    case 'least_requests':
      return new LeastRecentRequests(size, now)
  }
}

/** Window over which least_requests counts requests, ms. */
const WINDOW = 10_000

/**
 * least_requests: the upstream that was sent the fewest requests over the last ~10 s (a
 * sliding window of two buckets, the older one weighted by how much of it still overlaps).
 * The sidecar sees every request start but cannot tell, from Caddy 2.6's access log, which
 * upstream a finished request used, so it balances on recent request counts rather than on
 * requests in flight. Ties go to the next upstream after the last pick.
 */
class LeastRecentRequests implements Balancer {
  private current: number[]
  private previous: number[]
  private bucketStart: number
  private last = -1

  constructor(
    private readonly size: number,
    private readonly now: () => number,
  ) {
    this.current = new Array<number>(size).fill(0)
    this.previous = new Array<number>(size).fill(0)
    this.bucketStart = now()
  }

  record(i: number): void {
    this.roll()
    this.current[i] = (this.current[i] as number) + 1
  }

  pick(): number {
    const overlap = 1 - this.roll() / WINDOW
    let best = -1
    let bestLoad = Infinity
    for (let k = 1; k <= this.size; k++) {
      const i = (this.last + k) % this.size
      const load = (this.current[i] as number) + (this.previous[i] as number) * overlap
      if (load < bestLoad) {
        best = i
        bestLoad = load
      }
    }
    this.last = best
    return best
  }

  /** Move to a new bucket when the current one is over; returns ms elapsed in the current bucket. */
  private roll(): number {
    const elapsed = this.now() - this.bucketStart
    if (elapsed < WINDOW) return elapsed
    this.previous = elapsed < 2 * WINDOW ? this.current : new Array<number>(this.size).fill(0)
    this.current = new Array<number>(this.size).fill(0)
    this.bucketStart += elapsed < 2 * WINDOW ? WINDOW : elapsed
    return this.now() - this.bucketStart
  }
}
