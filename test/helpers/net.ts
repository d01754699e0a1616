import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A loopback TCP port that was free a moment ago (for programs that cannot bind :0 and tell us). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, host, () => {
      const addr = server.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      server.close(() => resolve(port))
    })
  })
}

/**
 * The first of `count` consecutive loopback ports that were all free a moment ago (an app with
 * replicas listens on port, port + 1, …). Tries a few bases: port + 1 is often taken.
 */
export async function freePortRun(count: number, host = '127.0.0.1'): Promise<number> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = createServer()
      server.once('error', () => resolve(false))
      server.listen(port, host, () => server.close(() => resolve(true)))
    })
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = await freePort(host)
    if (base + count - 1 > 65535) continue
    let all = true
    for (let i = 1; i < count && all; i++) all = await free(base + i)
    if (all) return base
  }
  throw new Error(`no ${count} consecutive free ports on ${host} after 50 tries`)
}

/** A temporary directory removed by the returned function. Short, so unix socket paths fit. */
export function tempDir(prefix = 'relight-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}
