// A plain HTTP app: answers with a greeting, its pid and how long it has been up.
import http from 'node:http'

const port = Number(process.env.PORT ?? 3001)
const host = process.env.HOST ?? '127.0.0.1'
const started = Date.now()

const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'text/plain; charset=utf-8')
  res.end(`hello from pid ${process.pid}, up ${((Date.now() - started) / 1000).toFixed(1)} s, you asked for ${req.url}\n`)
})
server.listen(port, host, () => console.log(`hello listening on http://${host}:${port}`))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
