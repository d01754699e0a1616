/**
 * The composition root hands every provider what the other kinds claim (issue 20): a Docker
 * provider the daemon builds leaves Swarm's task containers to the Swarm provider, even when no
 * swarm block is configured (a task container is never a plain container to wake or stop).
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import { DockerProvider } from '../../sidecar/providers/docker/provider.js'
import { createProviders } from '../../sidecar/providers/index.js'
import type { ContainerInspect } from '../../sidecar/providers/moby/containers.js'
import { tempDir } from '../helpers/net.js'

const inspect = (labels: Record<string, string>): ContainerInspect => {
  const c = JSON.parse(readFileSync(fileURLToPath(new URL('../../../test/fixtures/docker/inspect-host.json', import.meta.url)), 'utf8')) as ContainerInspect
  return { ...c, Config: { ...c.Config, Labels: { ...c.Config?.Labels, 'relight.domain': 'task.localhost', ...labels } } }
}

describe('claims across provider kinds', () => {
  it('a Docker provider built by createProviders ignores a Swarm task container', async () => {
    const { dir, remove } = tempDir('relight-claims-')
    after(remove)
    const config = parseConfig(`state_dir: ${dir}\nproviders:\n  docker:\n    socket: ${dir}/none.sock\n`)
    const providers = createProviders(config, pino({ level: 'silent' }), { baseDir: dir })
    after(() => Promise.all(providers.map((p) => p.close?.())))
    const docker = providers.find((p): p is DockerProvider => p instanceof DockerProvider)
    assert.ok(docker, 'a Docker provider was built')
    assert.ok(docker.toBackend(inspect({})), 'a labelled plain container is a backend')
    assert.equal(docker.toBackend(inspect({ 'com.docker.swarm.service.id': 'abc123' })), undefined, 'a Swarm task container belongs to the Swarm provider')
  })
})
