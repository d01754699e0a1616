/**
 * Reproduction for the stuck writer after S4 (cut) (notes/issue-21-stuck-inflight.md): the
 * contention cluster on the local swarm, S4 cut repeated; after each, the sidecars' admin view
 * (inflight, phase) and the activity writes the engine saw in the silence that followed.
 * Usage: node dist/test/soak/stuck-inflight.js [rounds] [freeze|cut]
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { request } from 'undici'
import { Cluster } from '../helpers/contention.js'
import { s4 } from '../helpers/contention-scenarios.js'

const TOKEN = '49299a4b17095a8ad9ad6c7d03caed15dc867d73bed888d563e88296ae93f281'
const rounds = Number(process.argv[2] ?? 4)
const mode = (process.argv[3] ?? 'cut') as 'freeze' | 'cut'
const c = await Cluster.start({ engine: 'swarm', sidecars: 3, idleMs: 4000 })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
try {
  for (const e of c.edges) {
    writeFileSync(e.config, readFileSync(e.config, 'utf8').replace('log_level: info', `log_level: debug\nadmin: { token: ${TOKEN} }`))
    await c.restart(e.index)
  }
  const listen = (i: number) => /listen: (\S+)/.exec(readFileSync((c.edges[i] as { config: string }).config, 'utf8'))?.[1]
  const admin = async (i: number) => {
    try {
      const r = await request(`http://${listen(i)}/_relight/admin/backends`, { headers: { authorization: `Bearer ${TOKEN}` } })
      const body = (await r.body.json()) as { backends: Record<string, unknown>[] }
      return body.backends.map((b) => ({ phase: b.phase, state: b.state, inflight: b.inflight, idle_ms: b.idle_ms }))
    } catch (err) {
      return String(err)
    }
  }
  for (let r = 0; r < rounds; r++) {
    const t0 = Date.now()
    const res = await s4(c, mode)
    const quietFrom = Date.now()
    const writes = c.writes.filter((w) => w >= quietFrom - 20_000).length
    const views = await Promise.all(c.edges.map((_, i) => admin(i)))
    const warn = c.edges.map((e) => (e.proc?.lines() ?? []).filter((l) => (l.seenAt as number) >= t0 && (l.level as number) >= 40).map((l) => `${String(l.msg)} ${String(l.err ?? l.reason ?? '')}`))
    console.log(JSON.stringify({ round: r, requests: res.requests, scaleDowns: res.scaleDowns, downAfterResumeMs: res.downAfterResumeMs, writesLast20s: writes, views, warn }))
    if (res.scaleDowns === 0) {
      // stuck: watch it for a while
      for (let k = 0; k < 6; k++) {
        await sleep(10_000)
        const v = await Promise.all(c.edges.map((_, i) => admin(i)))
        console.log(JSON.stringify({ after_s: Math.round((Date.now() - quietFrom) / 1000), writes10s: c.writes.filter((w) => w >= Date.now() - 10_000).length, downs: c.downs.filter((d) => d.at > quietFrom).length, v }))
      }
      for (const e of c.edges) writeFileSync(`/tmp/stuck-${e.name}.log`, (e.proc?.lines() ?? []).map((l) => JSON.stringify(l)).join('\n'))
      break
    }
  }
} finally {
  await c.close()
}
