/** Starts a real sidecar in this process on loopback port 0, with its access log on a temp socket. */
import pino, { type Logger } from 'pino'
import { join } from 'node:path'
import { parseConfig } from '../../sidecar/config/load.js'
import type { Provider } from '../../sidecar/core/provider.js'
import type { Resolver } from '../../sidecar/routing/stateful/resolver.js'
import { startSidecar, type Sidecar } from '../../sidecar/daemon.js'
import { tempDir } from './net.js'

export interface TestSidecar {
  readonly sidecar: Sidecar
  /** `127.0.0.1:PORT`, as the Caddy snippet takes it. */
  readonly address: string
  readonly url: string
  /** Caddy's `output net` form of the access-log socket. */
  readonly caddyAccessLog: string
  readonly dir: string
  close(): Promise<void>
}

export const testLogger = () => pino({ level: process.env.RELIGHT_TEST_LOG ?? 'silent' })

/**
 * `yaml` is the config without `listen` and `access_log` (filled in here). `{{dir}}` in it is
 * replaced by a fresh temp directory.
 */
export async function startTestSidecar(yaml: string, options: { providers?: Provider[]; accessLog?: boolean; baseDir?: string; resolver?: Resolver; logger?: Logger } = {}): Promise<TestSidecar> {
  const tmp = tempDir('relight-sc-')
  const socket = join(tmp.dir, 'access.sock')
  const head = `listen: 127.0.0.1:0\n${options.accessLog === false ? '' : `access_log: unix:${socket}\n`}`
  const config = parseConfig(head + yaml.replaceAll('{{dir}}', tmp.dir), 'test config')
  const sidecar = await startSidecar(config, {
    logger: options.logger ?? testLogger(),
    baseDir: options.baseDir ?? process.cwd(),
    ...(options.providers ? { providers: options.providers } : {}),
    ...(options.resolver ? { resolver: options.resolver } : {}),
  })
  return {
    sidecar,
    address: sidecar.address,
    url: `http://${sidecar.address}`,
    caddyAccessLog: `unix/${socket}`,
    dir: tmp.dir,
    close: async () => {
      await sidecar.close()
      tmp.remove()
    },
  }
}
