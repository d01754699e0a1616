import { unlinkSync } from 'node:fs'
import { connect } from 'node:net'
import { RelightError } from './errors.js'

/**
 * Make `path` free for a unix socket listener: a stale socket file (left by a crash) is
 * removed; a socket something still answers on is refused rather than taken over.
 */
export async function claimSocketPath(path: string, what: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const socket = connect(path)
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
  if (alive) {
    throw new RelightError('RELIGHT_ERR_CONFIG', `${what}: ${path} is in use by a running program (another relight-sidecar?); stop it or choose another path`)
  }
  try {
    unlinkSync(path)
  } catch {
    // not there: fine
  }
}
