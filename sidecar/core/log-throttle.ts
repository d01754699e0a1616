/**
 * "Log the 1st, 2nd, 4th, 8th… occurrence": loud enough to notice a failure that repeats, quiet
 * under a flood (an engine down for an hour, a dead webhook receiver, a flood of refused
 * connections). The one rule every repeated warning uses; the count is the caller's.
 */

/** True when `count` (1-based) is 1, 2, 4, 8…: this occurrence gets a log line. */
export function atPowerOfTwo(count: number): boolean {
  return (count & (count - 1)) === 0
}

/**
 * For a count that grows by more than one at a time: true when growing from `before` to
 * `after` reached a new power of two (or `before` was 0).
 */
export function crossedPowerOfTwo(before: number, after: number): boolean {
  return before <= 0 || Math.floor(Math.log2(after)) !== Math.floor(Math.log2(before))
}
