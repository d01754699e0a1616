/**
 * Benchmark helper process: the sidecar (startSidecar with the real config parser and JSON
 * logger) over the synthetic provider, driven over the IPC channel by test/bench/run.ts.
 * Started only with fork() (it needs the IPC channel); does nothing otherwise, so
 * `node --test dist/test/` running it as a file is harmless.
 *
 * Requests (each with an `id`, answered with `{ id, result }`):
 *   stats                → ChildStats
 *   sleep-all            → put every backend to sleep through the core (Backend.sleepNow)
 *   sweep { iterations } → time Registry.sweep() (ms per call: p50, max)
 *   resync { iterations } → time a full resync (list, upserts, host index rebuild), ms p50/max
 *   stop                 → close the sidecar and exit
 */
import { parseConfig } from '../../sidecar/config/load.js'
import { startSidecar } from '../../sidecar/daemon.js'
import { createLogger } from '../../sidecar/logger.js'
import type { ChildStats, SyntheticChildOptions } from './procs.js'
import { percentile, round } from './stats.js'
import { SyntheticProvider } from './synthetic-provider.js'

async function main(send: (message: unknown) => void): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as SyntheticChildOptions
  const config = parseConfig(`listen: 127.0.0.1:0\nlog_level: info\n${options.yaml ?? ''}`, 'bench config')
  const logger = createLogger(config.log_level, 'json')
  const provider = new SyntheticProvider({
    count: options.count,
    upstream: options.upstream,
    domain: options.domain,
    ...(options.initial ? { initial: options.initial } : {}),
    ...(options.wakeDelayMs !== undefined ? { wakeDelayMs: options.wakeDelayMs } : {}),
    ...(options.relistOnMiss !== undefined ? { relistOnMiss: options.relistOnMiss } : {}),
  })
  const sidecar = await startSidecar(config, { logger, baseDir: process.cwd(), providers: [provider] })
  const stats = (): ChildStats => {
    const mem = process.memoryUsage()
    return { backends: sidecar.registry.size, calls: { ...provider.calls }, rssMb: round(mem.rss / 2 ** 20, 1), heapUsedMb: round(mem.heapUsed / 2 ** 20, 1) }
  }
  process.on('message', (raw) => {
    const m = raw as { id: number; type: string; iterations?: number }
    const answer = (result: unknown) => send({ id: m.id, result })
    switch (m.type) {
      case 'stats':
        return answer(stats())
      case 'sleep-all': {
        const all = [...sidecar.registry.all()]
        void Promise.all(all.map((b) => b.sleepNow())).then((r) => answer({ asleep: r.filter((o) => o.result === 'done').length }))
        return
      }
      case 'sweep': {
        void (async () => {
          const times: number[] = []
          for (let i = 0; i < (m.iterations ?? 100); i++) {
            const t0 = performance.now()
            await sidecar.registry.sweep()
            times.push(performance.now() - t0)
          }
          answer({ p50: round(percentile(times, 50), 3), max: round(Math.max(...times), 3), iterations: times.length })
        })()
        return
      }
      case 'resync': {
        void (async () => {
          const times: number[] = []
          for (let i = 0; i < (m.iterations ?? 5); i++) {
            const t0 = performance.now()
            await sidecar.registry.resync(provider)
            times.push(performance.now() - t0)
          }
          answer({ p50: round(percentile(times, 50), 3), max: round(Math.max(...times), 3), iterations: times.length })
        })()
        return
      }
      case 'stop':
        void sidecar.close().then(() => {
          answer({ stopped: true })
          logger.flush()
          setImmediate(() => process.exit(0))
        })
        return
    }
  })
  process.on('disconnect', () => void sidecar.close().finally(() => process.exit(0)))
  process.on('SIGTERM', () => void sidecar.close().finally(() => process.exit(0)))
  send({ type: 'ready', address: sidecar.address })
}

const send = process.send?.bind(process)
if (send) {
  main((m) => send(m)).catch((err: unknown) => {
    process.stderr.write(`sidecar-child: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  })
}
