/**
 * Benchmark helper process: a bare Node http server that answers every request with 200 and
 * `X-Relight-Upstream` — what any Node sidecar costs at the least (no framework, no lookup).
 * Started by the bench driver with BENCH_BARE_PORT and BENCH_BARE_UPSTREAM; does nothing otherwise
 * (so `node --test dist/test/` running it as a file is harmless).
 */
import { createServer } from 'node:http'

const port = process.env.BENCH_BARE_PORT
const upstream = process.env.BENCH_BARE_UPSTREAM
if (port && upstream) {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'x-relight-upstream': upstream, 'content-length': '0' })
    res.end()
  })
  server.keepAliveTimeout = 72_000
  server.listen(Number(port), '127.0.0.1')
  process.on('SIGTERM', () => {
    server.closeAllConnections()
    server.close(() => process.exit(0))
  })
}
