/**
 * Before a process app starts: is its address already taken? A bind test (EADDRINUSE only; the
 * holder is named through /proc by startup/port-holder.ts, which check and serve share).
 */
import { createServer } from 'node:net'

/** true when `host:port` cannot be bound because something listens there (EADDRINUSE only). */
export function portTaken(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE'))
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(false)))
  })
}
