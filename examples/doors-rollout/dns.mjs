// A tiny authoritative DNS server for the doors-rollout example (and its test): answers A
// queries over UDP from a JSON file { "name": "ip", ... } read on every query, so a "rollout"
// is one edit of that file. TTL 1 s. Other names: NXDOMAIN; AAAA and other types: no data.
// Usage: node dns.mjs RECORDS.json [HOST] [PORT]      (default 127.0.0.1 5353)
import { createSocket } from 'node:dgram'
import { readFileSync } from 'node:fs'
import { isIPv4 } from 'node:net'
import { fileURLToPath } from 'node:url'

/** Answer one DNS query message; records maps lower-case names to IPv4 addresses. */
export function answer(query, records, ttl = 1) {
  if (query.length < 17) return undefined
  let at = 12
  const labels = []
  while (at < query.length && query[at] !== 0) {
    const len = query[at]
    if (len > 63) return undefined // compression is not used in questions
    labels.push(query.subarray(at + 1, at + 1 + len).toString('ascii'))
    at += 1 + len
  }
  const qEnd = at + 5 // zero label, QTYPE, QCLASS
  if (qEnd > query.length) return undefined
  const qtype = query.readUInt16BE(at + 1)
  const name = labels.join('.').toLowerCase()
  const ip = records[name]
  const found = typeof ip === 'string' && isIPv4(ip)
  const answers = found && qtype === 1 ? 1 : 0
  const out = Buffer.alloc(qEnd + answers * 16)
  query.copy(out, 0, 0, 2) // ID
  out.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100) | (name in records ? 0 : 3), 2) // QR AA RD, NXDOMAIN if unknown
  out.writeUInt16BE(1, 4) // QDCOUNT
  out.writeUInt16BE(answers, 6) // ANCOUNT
  query.copy(out, 12, 12, qEnd)
  if (answers) {
    let o = qEnd
    out.writeUInt16BE(0xc00c, o) // name: pointer to the question
    out.writeUInt16BE(1, o + 2) // A
    out.writeUInt16BE(1, o + 4) // IN
    out.writeUInt32BE(ttl, o + 6)
    out.writeUInt16BE(4, o + 10)
    ip.split('.').forEach((b, i) => (out[o + 12 + i] = Number(b)))
  }
  return out
}

/** Serve `recordsFile` on UDP host:port; resolves to the socket once bound. */
export function serveDns(recordsFile, host = '127.0.0.1', port = 5353) {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4')
  socket.on('message', (msg, rinfo) => {
    let records = {}
    try {
      records = JSON.parse(readFileSync(recordsFile, 'utf8'))
    } catch {
      // missing or half-written file: answer NXDOMAIN this time
    }
    const reply = answer(msg, records)
    if (reply) socket.send(reply, rinfo.port, rinfo.address)
  })
  return new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(port, host, () => resolve(socket))
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, host = '127.0.0.1', port = '5353'] = process.argv.slice(2)
  if (!file) {
    console.error('usage: node dns.mjs RECORDS.json [HOST] [PORT]')
    process.exit(2)
  }
  const socket = await serveDns(file, host, Number(port))
  console.log(`dns: answering from ${file} on ${host}:${socket.address().port}`)
}
