/**
 * The one clock the core judges durations on: monotonic, local to this host. No wall-clock time
 * from another host is ever compared with it (docs/architecture.md, "Shared decisions").
 */
export const monotonicNow = (): number => performance.now()
