/**
 * The image from the top-level Dockerfile, built on the local stand-in for node:24-slim: what it
 * holds (Node 24, production dependencies, no sources or tests), who it runs as, its labels, and
 * its HEALTHCHECK against a real sidecar; the Docker socket is readable only with its group.
 * Prints its size and cold start (docker run → healthy) for the README and CI notes.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { dockerSkip } from '../helpers/docker.js'
import { sidecarImage, standinBase } from '../helpers/images.js'
import { freePort, tempDir } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

const run = promisify(execFile)

interface ImageInfo {
  Size: number
  Config: { User: string; Labels: Record<string, string>; Entrypoint: string[]; Cmd: string[]; Healthcheck?: { Test: string[] } }
}

describe('the relight-sidecar image', () => {
  const tmp = tempDir('relight-image-')
  const containers: string[] = []
  let image: string
  let info: ImageInfo

  before(async () => {
    const skip = await dockerSkip()
    if (skip) throw new Error(skip)
    const built = await sidecarImage()
    image = built.tag
    info = (JSON.parse((await run('docker', ['image', 'inspect', image])).stdout) as ImageInfo[])[0] as ImageInfo
    const base = (JSON.parse((await run('docker', ['image', 'inspect', (await standinBase()).tag])).stdout) as ImageInfo[])[0] as ImageInfo
    process.stderr.write(`# image ${image}: ${(info.Size / 1e6).toFixed(0)} MB (base ${(base.Size / 1e6).toFixed(0)} MB + ${((info.Size - base.Size) / 1e6).toFixed(0)} MB); build ${(built.ms / 1000).toFixed(1)} s\n`)
  })
  after(async () => {
    for (const c of containers) await run('docker', ['rm', '-f', c]).catch(() => undefined)
    tmp.remove()
  })

  /** A command in a throwaway container of the image (no network). */
  const inImage = async (script: string) => (await run('docker', ['run', '--rm', '--network', 'none', '--entrypoint', 'sh', image, '-c', script])).stdout

  it('runs Node 24 as the non-root node user, with OCI labels and a HEALTHCHECK that runs relight-sidecar health', async () => {
    assert.equal(info.Config.User, 'node')
    assert.deepEqual(info.Config.Entrypoint, ['relight-sidecar'])
    assert.deepEqual(info.Config.Cmd, ['serve', '--config', '/etc/relight/relight.yaml'])
    assert.deepEqual(info.Config.Healthcheck?.Test.slice(0, 5), ['CMD', 'relight-sidecar', 'health', '--config', '/etc/relight/relight.yaml'])
    for (const label of ['title', 'description', 'version', 'revision', 'licenses', 'source']) assert.ok(info.Config.Labels[`org.opencontainers.image.${label}`], `label org.opencontainers.image.${label}`)
    const out = await inImage('id -u; node --version; ls /app; ls /app/node_modules')
    const [uid, node, ...rest] = out.trim().split('\n')
    assert.equal(uid, '1000')
    assert.match(node as string, /^v24\./)
    assert.deepEqual(rest.slice(0, 4), ['caddy', 'dist', 'node_modules', 'package.json'], '/app holds only what runs')
    for (const dev of ['typescript', '@types', 'puppeteer-core']) assert.ok(!rest.includes(dev), `no dev dependency ${dev}`)
    assert.equal(await inImage('ls /app/dist; find /app/dist -name "*.map" -o -name "*.d.ts" | wc -l'), 'sidecar\n0\n', 'no tests, no source maps or declarations')
  })

  it('cold start: docker run → healthy, by the image HEALTHCHECK; the socket needs --group-add', async () => {
    const port = await freePort()
    const config = join(tmp.dir, 'relight.yaml')
    writeFileSync(config, `listen: 127.0.0.1:${port}\nproviders:\n  docker:\n    socket: /var/run/docker.sock\n    label_prefix: relight-image-test-nothing\n`, { mode: 0o644 })
    const gid = String(statSync('/var/run/docker.sock').gid)
    const started = Date.now()
    const id = (await run('docker', ['run', '-d', '--network', 'host', '--group-add', gid, '--health-interval', '500ms', '-v', `${config}:/etc/relight/relight.yaml:ro`, '-v', '/var/run/docker.sock:/var/run/docker.sock', image])).stdout.trim()
    containers.push(id)
    const healthy = await until(
      async () => {
        const state = JSON.parse((await run('docker', ['inspect', '--format', '{{json .State}}', id])).stdout) as { Status: string; Health?: { Status: string } }
        if (state.Status !== 'running') throw new Error(`the container ${state.Status}: ${(await run('docker', ['logs', id])).stderr}`)
        return state.Health?.Status === 'healthy'
      },
      'the container to be healthy',
      60_000,
      100,
    )
    assert.equal(healthy, true)
    process.stderr.write(`# cold start (docker run → healthy, health checked every 500 ms): ${Date.now() - started} ms\n`)
    const probe = await run('docker', ['exec', id, 'relight-sidecar', 'health', '--config', '/etc/relight/relight.yaml'])
    assert.match(probe.stdout, new RegExp(`^healthy: http://127\\.0\\.0\\.1:${port}: 0 backend\\(s\\)`))
    // Without the socket's group: the sidecar cannot read the socket, and says so.
    const denied = await run('docker', ['run', '--rm', '--network', 'host', '-v', `${config}:/etc/relight/relight.yaml:ro`, '-v', '/var/run/docker.sock:/var/run/docker.sock', image, 'check', '--config', '/etc/relight/relight.yaml']).then(
      () => ({ code: 0, out: '' }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
    )
    assert.equal(denied.code, 1, denied.out)
    assert.match(denied.out, /PROBLEM .*docker.*permission denied|PROBLEM .*docker.*EACCES/i)
  })
})
