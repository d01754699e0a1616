import { dirname, resolve } from 'node:path'
import type { Config } from './schema.js'

export const DEFAULT_STATE_DIR = '/run/relight'

/**
 * Where the sidecar keeps what must survive its own crash (the children it started):
 * `state_dir`, else the directory of the listen socket or of the access-log socket when either
 * is a unix socket, else /run/relight. Relative paths resolve against `baseDir`.
 */
export function stateDir(config: Pick<Config, 'state_dir' | 'listen' | 'access_log'>, baseDir: string): string {
  if (config.state_dir !== undefined) return resolve(baseDir, config.state_dir)
  for (const address of [config.listen, config.access_log]) {
    if (address?.startsWith('unix:')) return dirname(resolve(baseDir, address.slice('unix:'.length)))
  }
  return DEFAULT_STATE_DIR
}
