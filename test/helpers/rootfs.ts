/**
 * Container images without a registry: a root filesystem holding Debian's static busybox and a
 * www/index.html, packed as a tar for `POST /images/create?fromSrc=-` (docker import) or
 * `podman import`. `busybox httpd -f -p 127.0.0.1:PORT -h /www` serves it.
 */
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const BUSYBOX = '/bin/busybox'

/** Build `dir/rootfs.tar` and return its path. */
export function busyboxRootfsTar(dir: string, index = '<h1>relight test image</h1>\n'): string {
  const root = join(dir, 'rootfs')
  mkdirSync(join(root, 'bin'), { recursive: true })
  mkdirSync(join(root, 'www'), { recursive: true })
  mkdirSync(join(root, 'tmp'), { recursive: true })
  copyFileSync(BUSYBOX, join(root, 'bin', 'busybox'))
  for (const tool of ['sh', 'httpd', 'sleep', 'echo', 'cat']) execFileSync('ln', ['-sf', 'busybox', join(root, 'bin', tool)])
  writeFileSync(join(root, 'www', 'index.html'), index)
  const tar = join(dir, 'rootfs.tar')
  execFileSync('tar', ['-C', root, '-cf', tar, '.'])
  return tar
}
