// A streaming app: /events is a Server-Sent Events stream that ticks every second;
// / is a page that shows it. An open stream keeps the app awake past its idle_timeout.
import http from 'node:http'

const port = Number(process.env.PORT ?? 3002)
const host = process.env.HOST ?? '127.0.0.1'

const page = `<!doctype html><meta charset="utf-8"><title>clock</title>
<h1>Server clock</h1><p id="t">connecting…</p>
<script>new EventSource('/events').onmessage = (e) => { document.getElementById('t').textContent = e.data }</script>`

const server = http.createServer((req, res) => {
  if (req.url?.startsWith('/events')) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
    const limit = Number(new URL(req.url, 'http://x').searchParams.get('ticks') ?? Infinity)
    let sent = 0
    const tick = () => {
      res.write(`data: ${new Date().toISOString()} (pid ${process.pid})\n\n`)
      if (++sent >= limit) res.end()
    }
    tick()
    const timer = setInterval(tick, Number(process.env.TICK_MS ?? 1000))
    res.on('close', () => clearInterval(timer))
    return
  }
  res.setHeader('content-type', 'text/html; charset=utf-8')
  res.end(page)
})
server.listen(port, host, () => console.log(`clock listening on http://${host}:${port}`))
process.on('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => process.exit(0))
})
