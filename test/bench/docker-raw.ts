/**
 * Docker, raw operations only (the docker provider is not in this tree yet): over the Engine API
 * on the unix socket, a busybox httpd container on the host network, 127.0.0.1 only.
 * unpause → first byte, and start → first byte (polling the port every ms), as the provider's
 * wake will do. The container and image are named `relight-bench-*` and carry no relight labels,
 * so no relight provider ever sees them; the container is removed at the end.
 */
import { createReadStream, existsSync } from 'node:fs'
import { Agent, request } from 'undici'
import { busyboxRootfsTar } from '../helpers/rootfs.js'
import { freePort } from '../helpers/net.js'
import type { BenchContext } from './context.js'
import { expectAnswer, get } from './http.js'
import { waitPort } from './procs.js'
import { load, sleep, type Spread, spread } from './stats.js'

const SOCKET = '/var/run/docker.sock'
const IMAGE = 'relight-bench-busybox:latest'

export interface DockerRaw {
  unpause: Spread
  start: Spread
  load: [number, number, number]
}

async function api(dispatcher: Agent, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, stream?: NodeJS.ReadableStream): Promise<{ status: number; text: string }> {
  const res = await request(`http://docker${path}`, {
    method,
    dispatcher,
    ...(stream ? { body: stream as never, headers: { 'content-type': 'application/x-tar' } } : body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
  })
  return { status: res.statusCode, text: await res.body.text() }
}

/** undefined when Docker cannot be reached (the reason is returned instead). */
export async function dockerRaw(ctx: BenchContext): Promise<DockerRaw | string> {
  if (!existsSync(SOCKET)) return `no ${SOCKET}`
  const dispatcher = new Agent({ connect: { socketPath: SOCKET } })
  let id: string | undefined
  try {
    const ping = await api(dispatcher, 'GET', '/_ping').catch((err: unknown) => ({ status: 0, text: (err as Error).message }))
    if (ping.status !== 200) return `dockerd does not answer on ${SOCKET}: ${ping.text}`
    if ((await api(dispatcher, 'GET', `/images/${IMAGE}/json`)).status !== 200) {
      const tar = busyboxRootfsTar(ctx.dir, 'relight bench\n')
      const made = await api(dispatcher, 'POST', `/images/create?fromSrc=-&repo=relight-bench-busybox&tag=latest`, undefined, createReadStream(tar))
      if (made.status !== 200) throw new Error(`docker import failed: ${made.status} ${made.text}`)
    }
    const port = await freePort()
    const created = await api(dispatcher, 'POST', `/containers/create?name=relight-bench-${process.pid}-${port}`, {
      Image: IMAGE,
      Cmd: ['/bin/busybox', 'httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', '/www'],
      HostConfig: { NetworkMode: 'host' },
    })
    if (created.status !== 201) throw new Error(`docker create failed: ${created.status} ${created.text}`)
    id = (JSON.parse(created.text) as { Id: string }).Id
    const op = async (what: string, status = 204) => {
      const r = await api(dispatcher, 'POST', `/containers/${id}/${what}`)
      if (r.status !== status && !(what === 'start' && r.status === 304)) throw new Error(`docker ${what}: ${r.status} ${r.text}`)
    }
    const firstByte = async (t0: number) => {
      await waitPort('127.0.0.1', port, 15_000)
      const a = await get({ port }, '/', 'raw')
      expectAnswer('busybox httpd in docker', a, 200, 'relight bench')
      return a.firstByteAt - t0
    }
    await op('start')
    await firstByte(performance.now())
    const n = { unpause: ctx.quick ? 5 : 20, start: ctx.quick ? 3 : 10 }
    const unpause: number[] = []
    for (let i = 0; i < n.unpause; i++) {
      await op('pause')
      await sleep(50)
      const t0 = performance.now()
      await op('unpause')
      unpause.push(await firstByte(t0))
    }
    const start: number[] = []
    for (let i = 0; i < n.start; i++) {
      await op('stop?t=2')
      const t0 = performance.now()
      await op('start')
      start.push(await firstByte(t0))
    }
    const result = { unpause: spread(unpause), start: spread(start), load: load() }
    ctx.note(`wake: docker raw unpause p50 ${result.unpause.p50} ms, start p50 ${result.start.p50} ms (load ${result.load.join(' ')})`)
    return result
  } finally {
    if (id) await api(dispatcher, 'DELETE', `/containers/${id}?force=true`).catch(() => undefined)
    await dispatcher.close()
  }
}
