// A stand-in for the multi-node router: prints each heartbeat this node sends, and refuses a
// wrong bearer secret. Usage: HEARTBEAT_SECRET=… node heartbeat-receiver.mjs  (127.0.0.1:9135)
import { createServer } from 'node:http'

const secret = process.env.HEARTBEAT_SECRET ?? 'example-secret-change-me'
createServer((req, res) => {
  let body = ''
  req.on('data', (d) => (body += d))
  req.on('end', () => {
    if (req.headers.authorization !== `Bearer ${secret}`) {
      console.log(`${new Date().toISOString()} refused a heartbeat with a wrong secret`)
      return res.writeHead(401).end()
    }
    const hb = JSON.parse(body)
    console.log(`${new Date().toISOString()} node ${hb.node_ip}: total ${hb.total_cpu_pct}% CPU, ${hb.total_mem_mb} MB`)
    for (const c of hb.containers) console.log(`  ${c.domain.padEnd(24)} ${c.status.padEnd(12)} ${c.cpu_pct}% ${c.mem_mb} MB (${c.provider})`)
    res.writeHead(204).end()
  })
}).listen(9135, '127.0.0.1', () => console.log('heartbeat receiver on http://127.0.0.1:9135/heartbeat'))
