/**
 * The sidecar's unix sockets (listen, access_log, ops_listen) are never connectable by other
 * users, not even between bind and the chmod that gives them their final mode (review of issue
 * 25: under umask 0 they were 0777 in that window, and a connection opened then stays open,
 * "proven" as Caddy's). Each socket's mode is read on its 'listening' event, which follows the
 * bind and comes before the chmod, with the process umask at 0.
 */
import assert from 'node:assert/strict'
import { statSync } from 'node:fs'
import { Server } from 'node:net'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import { startSidecar } from '../../sidecar/daemon.js'
import { tempDir } from '../helpers/net.js'

describe('unix sockets are bound private', () => {
  const tmp = tempDir('relight-bind-mode-')
  after(() => tmp.remove())

  it('under umask 0, every socket has no group or other permission from its bind on, and its final mode after', async (t) => {
    const seen = new Map<string, number>()
    type Emit = (this: Server, event: string | symbol, ...args: unknown[]) => boolean
    const emit = Server.prototype.emit as Emit
    const watching: Emit = function (event, ...args) {
      const address = event === 'listening' ? this.address() : null
      if (typeof address === 'string') seen.set(address, statSync(address).mode & 0o777)
      return emit.call(this, event, ...args)
    }
    Server.prototype.emit = watching as Server['emit']
    t.after(() => {
      Server.prototype.emit = emit as Server['emit']
    })
    const sockets = { listen: join(tmp.dir, 'auth.sock'), access_log: join(tmp.dir, 'access.sock'), ops_listen: join(tmp.dir, 'ops.sock') }
    const config = parseConfig(`listen: unix:${sockets.listen}\naccess_log: unix:${sockets.access_log}\nops_listen: unix:${sockets.ops_listen}\n`, 'test')
    const old = process.umask(0)
    let sidecar: Awaited<ReturnType<typeof startSidecar>> | undefined
    try {
      sidecar = await startSidecar(config, { logger: pino({ level: 'silent' }), baseDir: tmp.dir, providers: [] })
    } finally {
      process.umask(old)
    }
    t.after(() => sidecar?.close())
    for (const [what, path] of Object.entries(sockets)) {
      assert.equal(seen.get(path), 0o700, `${what}: mode at bind ${seen.get(path)?.toString(8)}`)
      assert.equal(statSync(path).mode & 0o777, 0o600, `${what}: final mode`)
    }
    // the umask is the process's again
    assert.equal(process.umask(old), old)
  })
})
