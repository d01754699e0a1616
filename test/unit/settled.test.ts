/**
 * The half-written-config guard's scan of /proc/<pid>/fd (config/settled.ts) never blocks the
 * event loop: another user holding ~100k fds made the old synchronous scan stall forward_auth
 * for over a second. Here a fake /proc with thousands of fds: the scan finds the one writer, and
 * the event loop turned while it ran.
 */
import assert from 'node:assert/strict'
import { mkdirSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { writersOf } from '../../sidecar/config/settled.js'
import { tempDir } from '../helpers/net.js'

describe('config writers scan', () => {
  it('finds the writer among thousands of fds without blocking the event loop', async (t) => {
    const tmp = tempDir('relight-settled-')
    t.after(() => tmp.remove())
    const config = join(tmp.dir, 'relight.yaml')
    writeFileSync(config, 'listen: 127.0.0.1:1\n')
    const proc = join(tmp.dir, 'proc')
    const other = join(tmp.dir, 'other')
    writeFileSync(other, '')
    const fake = (pid: number, fds: number, comm: string) => {
      mkdirSync(join(proc, String(pid), 'fd'), { recursive: true })
      mkdirSync(join(proc, String(pid), 'fdinfo'))
      writeFileSync(join(proc, String(pid), 'comm'), `${comm}\n`)
      for (let fd = 0; fd < fds; fd++) {
        symlinkSync(other, join(proc, String(pid), 'fd', String(fd)))
        writeFileSync(join(proc, String(pid), 'fdinfo', String(fd)), 'pos:\t0\nflags:\t02\n')
      }
    }
    fake(100, 3000, 'hog') // another user's thousands of fds, open read-write on another file
    fake(200, 5, 'editor')
    symlinkSync(realpathSync(config), join(proc, '200', 'fd', '9'))
    writeFileSync(join(proc, '200', 'fdinfo', '9'), 'pos:\t0\nflags:\t0100001\n') // O_WRONLY
    fake(300, 3, 'reader')
    symlinkSync(realpathSync(config), join(proc, '300', 'fd', '7'))
    writeFileSync(join(proc, '300', 'fdinfo', '7'), 'pos:\t0\nflags:\t0100000\n') // read-only

    let turns = 0
    let spinning = true
    const spin = () => {
      if (!spinning) return
      turns++
      setImmediate(spin)
    }
    setImmediate(spin)
    const writers = await writersOf(config, proc)
    spinning = false
    assert.deepEqual(writers, [{ pid: 200, command: 'editor' }], 'the writer, not the reader nor the hog')
    assert.ok(turns >= 10, `the event loop turned only ${turns} times during the scan of 3000 fds: the scan blocks it`)
  })
})
