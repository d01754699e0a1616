import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import pino from 'pino'
import { processConfigSchema } from '../../sidecar/providers/process/config.js'
import { ProcessProvider } from '../../sidecar/providers/process/provider.js'
import { groupUsage, parseStat } from '../../sidecar/providers/process/stats.js'
import { freePort, tempDir } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

/** Listens on PORT and spins about 80 % of a core. */
const BUSY_APP = `require('node:http').createServer((q, r) => r.end('ok')).listen(Number(process.env.PORT), '127.0.0.1')
setInterval(() => { const end = Date.now() + 20; while (Date.now() < end); }, 25)`

/** A /proc line: pid (comm) state ppid pgrp … utime(14) stime(15) cutime(16) cstime(17) … starttime(22) */
function statLine(pid: number, comm: string, pgrp: number, utime: number, stime: number, cutime: number, cstime: number, start: number): string {
  const f = [`${pid}`, `(${comm})`, 'S', '1', `${pgrp}`, `${pgrp}`, '0', '-1', '4194560', '0', '0', '0', '0', `${utime}`, `${stime}`, `${cutime}`, `${cstime}`, '20', '0', '1', '0', `${start}`, '0', '0']
  return `${f.join(' ')}\n`
}

describe('process provider stats', () => {
  const tmp = tempDir('relight-proc-')
  after(() => tmp.remove())

  it('parses /proc/<pid>/stat even when the command name holds spaces and parentheses', () => {
    const parsed = parseStat(statLine(42, 'my (odd) app', 40, 10, 5, 2, 1, 1000))
    assert.deepEqual(parsed, { pgrp: 40, ticks: 18, startTicks: 1000 })
  })

  it('sums CPU time and resident memory over every process of the replicas\' groups', async () => {
    const proc = join(tmp.dir, 'proc')
    const add = (pid: number, pgrp: number, utime: number, resident: number, start = 500) => {
      mkdirSync(join(proc, String(pid)), { recursive: true })
      writeFileSync(join(proc, String(pid), 'stat'), statLine(pid, 'node', pgrp, utime, 0, 0, 0, start))
      writeFileSync(join(proc, String(pid), 'statm'), `1000 ${resident} 10 1 0 100 0\n`)
    }
    add(100, 100, 100, 10) // leader of group 100
    add(101, 100, 50, 5) // its child
    add(200, 200, 999, 999) // another group: not counted
    writeFileSync(join(proc, 'uptime'), '20.00 30.00\n')
    const usage = await groupUsage([100], proc)
    assert.equal(usage.processes, 2)
    assert.equal(usage.cpuNs, ((100 + 50) / 100) * 1e9) // USER_HZ is 100 on Linux
    assert.equal(usage.rssBytes, 15 * 4096)
    // 1.5 s of CPU over the 15 s since the leader started (uptime 20 s, start tick 500 = 5 s)
    assert.equal(usage.avgCpuPct, 10)
  })

  it('reports a running app\'s figures and zero for a stopped one', async (t) => {
    const port = await freePort()
    const provider = new ProcessProvider(
      processConfigSchema.parse({
        apps: [{ name: 'stats', hosts: ['stats.localhost'], command: [process.execPath, '-e', BUSY_APP], env: { PORT: '{{port}}' }, port, stdout: 'null', stderr: 'null', grace_period: '2s' }],
      }),
      pino({ level: 'silent' }),
    )
    t.after(() => provider.close())
    await provider.wake('stats', AbortSignal.timeout(5000))
    // The app keeps a core busy, so a CPU figure of 0 means a broken computation (NaN reports as 0).
    // Right after spawn the child may not have left the sidecar's process group yet (setsid runs in
    // the child), so its group can be empty for a moment: ask until the group shows up.
    await until(async () => (await provider.stats('stats', AbortSignal.timeout(5000))).mem_mb > 0, 'a node process to show resident memory')
    // Then the rate between two calls: /proc counts CPU in 10 ms ticks, so ask until one has passed.
    await until(async () => (await provider.stats('stats', AbortSignal.timeout(5000))).cpu_pct > 0, 'a busy process\'s CPU rate between two calls to be above 0')
    // Overlapping calls (heartbeat, busy_cpu, its first reading) share one scan: separate scans
    // finishing out of order gave figures that went backwards (review of issue 25).
    const together = await Promise.all([1, 2, 3, 4, 5].map(() => provider.stats('stats', AbortSignal.timeout(5000))))
    for (const r of together) assert.deepEqual(r, together[0])
    await provider.sleep('stats', 'stop', AbortSignal.timeout(5000))
    assert.deepEqual(await provider.stats('stats', AbortSignal.timeout(5000)), { cpu_pct: 0, mem_mb: 0 })
  })
})
