import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Bind `port` (0: any) on `host` and let go: the port bound, or undefined when it was taken. */
function tryPort(port: number, host: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(undefined))
    server.listen(port, host, () => {
      const addr = server.address()
      const bound = typeof addr === 'object' && addr ? addr.port : undefined
      server.close(() => resolve(bound))
    })
  })
}

/** The lowest port the kernel hands out to outgoing connections and `listen(0)` (32768 on Linux). */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768
  } catch {
    return 32768
  }
}

/**
 * A loopback TCP port that was free a moment ago (for programs that cannot bind :0 and tell us).
 * Picked at random below the ephemeral range: a port from there could be taken, before the
 * program binds it, by any outgoing connection or `listen(0)` of the tests running beside.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const low = 10_000
  const high = ephemeralLow()
  for (let attempt = 0; high > low + 1000 && attempt < 50; attempt++) {
    const port = await tryPort(low + Math.floor(Math.random() * (high - low)), host)
    if (port !== undefined) return port
  }
  const any = await tryPort(0, host)
  if (any === undefined) throw new Error(`cannot bind a port on ${host}`)
  return any
}

/**
 * The first of `count` consecutive loopback ports that were all free a moment ago (an app with
 * replicas listens on port, port + 1, …). Tries a few bases: port + 1 is often taken.
 */
export async function freePortRun(count: number, host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = await freePort(host)
    if (base + count - 1 > 65535) continue
    let all = true
    for (let i = 1; i < count && all; i++) all = (await tryPort(base + i, host)) !== undefined
    if (all) return base
  }
  throw new Error(`no ${count} consecutive free ports on ${host} after 50 tries`)
}

/** A temporary directory removed by the returned function. Short, so unix socket paths fit. */
export function tempDir(prefix = 'relight-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}
