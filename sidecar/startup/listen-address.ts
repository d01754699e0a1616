/** Listen addresses (`host:port` or `unix:/path`): probing them and saying why one cannot be used. */
import { createServer } from 'node:net'
import { describeHolder } from './port-holder.js'

export interface TcpAddress {
  readonly host: string
  readonly port: number
}

/** `127.0.0.1:9123` → host and port; `[::1]:9123` → `::1`; `:9123` → 127.0.0.1. */
export function parseTcpAddress(address: string): TcpAddress {
  const colon = address.lastIndexOf(':')
  return { host: address.slice(0, colon).replace(/^\[|\]$/g, '') || '127.0.0.1', port: Number(address.slice(colon + 1)) }
}

export function unixPath(address: string): string | undefined {
  return address.startsWith('unix:') ? address.slice('unix:'.length) : undefined
}

/**
 * One line saying why listening on `address` failed; `what` names the config key. `check` and
 * `serve` print the same sentence for the same cause.
 */
export function describeListenError(what: string, address: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  const { host, port } = parseTcpAddress(address)
  switch (code) {
    case 'EADDRINUSE':
      return `${what}: ${address} is in use by another program${describeHolder(port)}`
    case 'EACCES':
      return `${what}: no permission to listen on ${address}${port < 1024 ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)' : ''}`
    case 'EADDRNOTAVAIL':
      return `${what}: ${host} is not an address of this machine`
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${what}: the host name ${host} does not resolve`
    default:
      return `${what}: cannot listen on ${address}: ${(err as Error).message}`
  }
}

/** Bind `host:port` for a moment; the reason it cannot be bound, or undefined. */
export function tcpListenProblem(what: string, address: string): Promise<string | undefined> {
  const { host, port } = parseTcpAddress(address)
  if (port === 0) return Promise.resolve(undefined)
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', (err) => resolve(describeListenError(what, address, err)))
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)))
  })
}
