/**
 * The backend the accounting tests and the soak route to: `/sse` an event stream, `/slow…` never
 * answers (the client gives up), `/reset` resets the connection (Caddy answers 502), websocket
 * upgrades answered with 101 and a close frame echoed before FIN, anything else `ok`. close()
 * destroys every connection, upgraded ones too (server.close() alone would wait for them).
 */
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { Socket } from 'node:net'

export async function startStreamBackend(): Promise<{ server: Server; address: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.url === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: first\n\n')
      const t = setInterval(() => res.write('data: tick\n\n'), 100)
      res.on('close', () => clearInterval(t))
      return
    }
    if (req.url?.startsWith('/slow')) return // answers never: the client gives up
    if (req.url === '/reset') {
      req.socket.destroy() // Caddy answers 502
      return
    }
    res.end('ok\n')
  })
  server.on('upgrade', (req, socket: Socket) => {
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
    socket.on('error', () => undefined)
    socket.on('data', (d: Buffer) => {
      if ((d[0] ?? 0) === 0x88) socket.end(Buffer.from([0x88, 0x00])) // a close frame: answer it, then FIN
    })
  })
  // every connection, upgraded ones too (server.close() would wait for them)
  const sockets = new Set<Socket>()
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const a = server.address()
  return {
    server,
    address: `127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`,
    close: () => {
      const closed = new Promise<void>((r) => server.close(() => r()))
      for (const s of sockets) s.destroy()
      return closed
    },
  }
}
