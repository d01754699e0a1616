/**
 * Signals from the first line of `serve`: main.ts imports this module first, so SIGHUP, SIGTERM
 * and SIGINT are caught before any other module loads (Node's default for SIGHUP and SIGTERM is
 * to die: `systemctl reload` right after `start` killed the sidecar with exit 129). Until serve
 * takes them over (`takeSignals`) they are kept and handed over in order; other commands
 * (check, reload, snippet) keep Node's defaults.
 */
const SIGNALS = ['SIGHUP', 'SIGTERM', 'SIGINT'] as const
export type StopOrReload = (typeof SIGNALS)[number]

const pending: StopOrReload[] = []
let handler: ((signal: StopOrReload) => void) | undefined

function receive(signal: NodeJS.Signals): void {
  const known = signal as StopOrReload
  if (handler) handler(known)
  else pending.push(known)
}

/** Catch the signals now (idempotent). */
export function catchSignalsEarly(): void {
  for (const signal of SIGNALS) {
    if (!process.listeners(signal).includes(receive)) process.on(signal, receive)
  }
}

/** From now on `next` handles the signals, starting with those that came before. */
export function takeSignals(next: (signal: StopOrReload) => void): void {
  catchSignalsEarly()
  handler = next
  for (const signal of pending.splice(0)) next(signal)
}

if (process.argv[2] === 'serve') catchSignalsEarly()
