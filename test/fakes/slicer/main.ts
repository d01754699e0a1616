#!/usr/bin/env node
/**
 * The Slicer API simulator as a command, for examples/slicer and for trying the sidecar without
 * a Slicer host:
 *   node dist/test/fakes/slicer/main.js --listen 127.0.0.1:8081 --token T \
 *     --node hello --node 'shop,shop.localhost,relight.port=3000'
 * Stops (and ends every VM process) on SIGINT or SIGTERM.
 */
import { parseArgs } from 'node:util'
import { SlicerSimulator } from './simulator.js'

const USAGE = `Usage: node dist/test/fakes/slicer/main.js [options]
  --listen ADDR        127.0.0.1:PORT, unix:/path or /path (default 127.0.0.1:8081)
  --token TOKEN        bearer token the API requires (default: none)
  --host-group NAME    a host group that exists (repeatable; default apps)
  --app-port PORT      port each VM's app listens on (default 8080)
  --ip-prefix A.B.C    VM addresses are A.B.C.2, A.B.C.3, ... (default 127.0.0; loopback only)
  --node TAGS          create a node in the first host group at start, comma-separated tags (repeatable)
  --persistent-node TAGS   the same, for a persistent node (can sleep with stop)`

function main(): void {
  let values: Record<string, string | string[] | boolean | undefined>
  try {
    ;({ values } = parseArgs({
      options: {
        listen: { type: 'string', default: '127.0.0.1:8081' },
        token: { type: 'string' },
        'host-group': { type: 'string', multiple: true },
        'app-port': { type: 'string', default: '8080' },
        'ip-prefix': { type: 'string', default: '127.0.0' },
        node: { type: 'string', multiple: true },
        'persistent-node': { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }))
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`)
    process.exit(2)
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    return
  }
  const prefix = String(values['ip-prefix'])
  if (!/^127\.\d{1,3}\.\d{1,3}$/.test(prefix)) {
    process.stderr.write('--ip-prefix must be a loopback prefix such as 127.0.0\n')
    process.exit(2)
  }
  const groups = (values['host-group'] as string[] | undefined) ?? ['apps']
  void run({
    listen: String(values.listen),
    ...(typeof values.token === 'string' ? { token: values.token } : {}),
    hostGroups: groups,
    appPort: Number(values['app-port']),
    ipPrefix: prefix,
    nodes: [
      ...((values.node as string[] | undefined) ?? []).map((t) => ({ tags: t, persistent: false })),
      ...((values['persistent-node'] as string[] | undefined) ?? []).map((t) => ({ tags: t, persistent: true })),
    ],
  })
}

async function run(o: { listen: string; token?: string; hostGroups: string[]; appPort: number; ipPrefix: string; nodes: { tags: string; persistent: boolean }[] }): Promise<void> {
  const sim = await SlicerSimulator.start({
    listen: o.listen,
    ...(o.token !== undefined ? { token: o.token } : {}),
    hostGroups: o.hostGroups,
    appPort: o.appPort,
    ipPrefix: o.ipPrefix,
  })
  const log = (msg: string) => process.stdout.write(`slicer-sim: ${msg}\n`)
  sim.on('state', (h, s) => log(`${h} ${s}`))
  sim.on('request', (m, url) => log(`${m} ${url}`))
  log(`listening on ${sim.url}${o.token !== undefined ? ' (bearer token required)' : ''}; host groups ${o.hostGroups.join(', ')}`)
  for (const n of o.nodes) {
    const vm = await sim.createNode(o.hostGroups[0] as string, { tags: n.tags.split(',').map((t) => t.trim()).filter(Boolean), persistent: n.persistent })
    log(`created ${vm.hostname} at ${vm.ip}:${vm.port} tags [${vm.tags.join(', ')}]${vm.persistent ? ' persistent' : ''}`)
  }
  let stopping = false
  const stop = () => {
    if (stopping) return
    stopping = true
    void sim.close().then(() => process.exit(0))
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}

// `node --test dist/test/` runs every file under dist/test, this one included: as a test file it
// has nothing to do (a simulator that never exits would hang the run).
if (process.env.NODE_TEST_CONTEXT === undefined) main()
