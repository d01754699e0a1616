// A stand-in for one pod of a stateful (Doors-like) app. It encrypts its own IP into a token
// with the shared secret, exactly as doors-caddy's NewTokenCipher(secret).Encode(ip) does, and:
//   GET /                 → "served by NAME (IP)", sets the sticky cookie `upstream=TOKEN`
//   GET /~/TOKEN/ping     → a session call; only the pod that owns TOKEN accepts it
// Usage: DOORS_SECRET=... node pod.mjs NAME IP [PORT]   (PORT defaults to 8090)
import { createServer } from 'node:http'
import { TokenCipher } from 'relight-sidecar/token'

const [name, ip, port = '8090'] = process.argv.slice(2)
if (!name || !ip || !process.env.DOORS_SECRET) {
  console.error('usage: DOORS_SECRET=... node pod.mjs NAME IP [PORT]')
  process.exit(2)
}
const token = new TokenCipher(process.env.DOORS_SECRET).encode(ip)

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0]
  if (path.startsWith('/~/')) {
    const owner = path.split('/')[2] === token
    res.statusCode = owner ? 200 : 404
    res.end(owner ? `pod ${name} (${ip}): session call ${path} ok\n` : `pod ${name} (${ip}): not my session\n`)
    return
  }
  res.setHeader('set-cookie', `upstream=${token}; Path=/; HttpOnly; SameSite=Lax`)
  res.end(`served by pod ${name} (${ip}); session calls go to /~/${token}/ping\n`)
})
server.listen(Number(port), ip, () => console.log(`pod ${name} listening on ${ip}:${port}`))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
