/**
 * The contention suite of issue 21, short form, on the local swarm: three sidecar processes, each
 * behind its own real Caddy and its own counting, pausable proxy to the Docker socket, one busybox
 * service published on a 127.0.0.1 host port, idle_timeout 4 s. Truth from the engine's own
 * events (test/helpers/contention.ts); the scenarios and what they assert are in
 * test/helpers/contention-suite.ts. Long form with figures: `npm run soak:cluster`.
 */
import { after, before, describe } from 'node:test'
import { caddySkip } from '../helpers/caddy.js'
import { Cluster } from '../helpers/contention.js'
import { contentionTests } from '../helpers/contention-suite.js'
import { swarmSkip } from '../helpers/swarm.js'

const skip = (await swarmSkip()) ?? caddySkip()
const IDLE_MS = 4000

describe('swarm contention: three sidecars, one service', { skip, timeout: 540_000 }, () => {
  let c: Cluster

  before(async () => {
    c = await Cluster.start({ engine: 'swarm', sidecars: 3, idleMs: IDLE_MS })
  })
  after(async () => {
    await c?.close()
  })

  contentionTests({
    cluster: () => c,
    idleMs: IDLE_MS,
    api: 'engine',
    s7: true,
    // measured (soak S8, idle 4 s, 15-s windows): 302–374 requests/min per sidecar with 3 against 215 alone
    busyEachTodo:
      "Swarm: each sidecar inspects the service after the others' token writes, and concurrent writers lose CAS races and retry (GET + write): per-sidecar cost grows with the number of busy sidecars",
  })
})
