/**
 * The asynchronous /proc scans (issue 25: wakes and heartbeats must not hold the event loop)
 * give the same answers as their synchronous versions, on a fixture /proc whose answer is
 * known, and on this machine's /proc.
 */
import assert from 'node:assert/strict'
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { scanPids } from '../../sidecar/core/proc-stat.js'
import { listenersFor, listenersForAsync } from '../../sidecar/core/socket-owner.js'
import { groupMembers, groupMembersAsync } from '../../sidecar/providers/process/child-records.js'
import { tcpPortHolder, tcpPortHolderAsync } from '../../sidecar/startup/port-holder.js'
import { tempDir } from '../helpers/net.js'

/** /proc/<pid>/stat: pid (comm) state ppid pgrp … starttime(22) */
function statLine(pid: number, comm: string, state: string, pgrp: number): string {
  const f = [`${pid}`, `(${comm})`, state, '1', `${pgrp}`, `${pgrp}`, '0', '-1', '0', '0', '0', '0', '0', '1', '1', '0', '0', '20', '0', '1', '0', '500', '0', '0']
  return `${f.join(' ')}\n`
}

const TCP_HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'
/** One /proc/net/tcp line: local and remote as hex `ADDR:PORT`, state hex (0A listen, 01 established). */
function tcpLine(sl: number, local: string, remote: string, state: string, inode: number): string {
  return `  ${sl}: ${local} ${remote} ${state} 00000000:00000000 00:00000000 00000000  1000        0 ${inode} 1 0000000000000000 100 0 0 10 0\n`
}

describe('asynchronous /proc scans', () => {
  const tmp = tempDir('relight-proc-async-')
  after(() => tmp.remove())
  const proc = join(tmp.dir, 'proc')
  const add = (pid: number, comm: string, state: string, pgrp: number, fds: Record<string, string> = {}) => {
    mkdirSync(join(proc, String(pid), 'fd'), { recursive: true })
    writeFileSync(join(proc, String(pid), 'stat'), statLine(pid, comm, state, pgrp))
    writeFileSync(join(proc, String(pid), 'comm'), `${comm}\n`)
    for (const [fd, target] of Object.entries(fds)) symlinkSync(target, join(proc, String(pid), 'fd', fd))
  }
  // group 100: leader, a child holding the listener, a zombie; group 200 holds an unrelated socket
  add(100, 'app', 'S', 100, { '0': '/dev/null' })
  add(101, 'app worker', 'S', 100, { '3': 'socket:[5555]' })
  add(102, 'app', 'Z', 100)
  add(200, 'other', 'S', 200, { '4': 'socket:[7777]' })
  mkdirSync(join(proc, 'net'), { recursive: true })
  mkdirSync(join(proc, 'self'), { recursive: true }) // not a pid: skipped
  // 127.0.0.1:8080 listening (inode 5555); a client connection to it; 0.0.0.0:9090 listening (7777)
  writeFileSync(
    join(proc, 'net', 'tcp'),
    TCP_HEADER + tcpLine(0, '0100007F:1F90', '00000000:0000', '0A', 5555) + tcpLine(1, '0100007F:C350', '0100007F:1F90', '01', 6666) + tcpLine(2, '00000000:2382', '00000000:0000', '0A', 7777),
  )
  writeFileSync(join(proc, 'net', 'tcp6'), TCP_HEADER)

  it('scanPids visits every numeric entry once, and gives [] for a /proc it cannot read', async () => {
    const seen = await scanPids(proc, async (pid) => pid)
    assert.deepEqual(seen.sort(), ['100', '101', '102', '200'])
    assert.deepEqual(await scanPids(join(tmp.dir, 'missing'), async (pid) => pid), [])
  })

  it('groupMembersAsync: the live members of a group, as groupMembers', async () => {
    assert.deepEqual((await groupMembersAsync(100, proc)).sort(), [100, 101])
    assert.deepEqual((await groupMembersAsync(100, proc)).sort(), groupMembers(100, proc).sort())
    assert.deepEqual(await groupMembersAsync(300, proc), [])
  })

  it('listenersForAsync: the listeners covering an address, as listenersFor', async () => {
    const inodes = (l: readonly { inode: string }[]) => l.map((s) => s.inode).sort()
    assert.deepEqual(inodes(await listenersForAsync('127.0.0.1', 8080, proc)), ['5555'])
    assert.deepEqual(inodes(await listenersForAsync('127.0.0.1', 9090, proc)), ['7777'], 'a wildcard listener covers 127.0.0.1')
    assert.deepEqual(await listenersForAsync('127.0.0.1', 1, proc), [])
    for (const [host, port] of [['127.0.0.1', 8080], ['127.0.0.1', 9090], ['::1', 9090], ['127.0.0.2', 8080]] as const) {
      assert.deepEqual(inodes(await listenersForAsync(host, port, proc)), inodes(listenersFor(host, port, proc)), `${host}:${port}`)
    }
  })

  it('tcpPortHolderAsync: the process holding the listener, with its command and group, as tcpPortHolder', async () => {
    assert.deepEqual(await tcpPortHolderAsync(8080, proc), { pid: 101, command: 'app worker', pgid: 100 })
    assert.deepEqual(await tcpPortHolderAsync(8080, proc), tcpPortHolder(8080, proc))
    assert.deepEqual(await tcpPortHolderAsync(9090, proc), { pid: 200, command: 'other', pgid: 200 })
    assert.equal(await tcpPortHolderAsync(1, proc), undefined, 'no listener')
    assert.equal(await tcpPortHolderAsync(50000, proc), undefined, 'a client port is not a listener')
  })

  it('on this machine: a listener of this process is found the same way by both', async (t) => {
    const server = createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    t.after(() => server.close())
    const port = (server.address() as { port: number }).port
    const holder = await tcpPortHolderAsync(port)
    assert.equal(holder?.pid, process.pid)
    assert.deepEqual(holder, tcpPortHolder(port))
    assert.ok((await groupMembersAsync(holder?.pgid ?? -1)).includes(process.pid))
    assert.deepEqual((await listenersForAsync('127.0.0.1', port)).map((l) => l.inode), listenersFor('127.0.0.1', port).map((l) => l.inode))
  })
})
