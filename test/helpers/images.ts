/**
 * The container images the container tests run, built locally (no registry is reachable here):
 * the stand-in for node:24-slim (deploy/images/node-standin.sh), Caddy from Debian's binary
 * (deploy/images/caddy-image.sh) and relight-sidecar from the top-level Dockerfile on that
 * stand-in. The scripts cache under /var/cache/relight-images and the Dockerfile build uses
 * Docker's layer cache, so after the first run (minutes) each is ready in seconds. Builds are
 * serialised through a lock file: two test files asking at once share one build.
 */
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const IMAGES = join(ROOT, 'deploy/images')
const CACHE = process.env.RELIGHT_IMAGE_CACHE ?? '/var/cache/relight-images'
/** The tag the tests give the sidecar image built from this checkout. */
export const SIDECAR_IMAGE = 'relight-sidecar:ci'

export interface Built {
  readonly tag: string
  readonly ms: number
  /** The build's output (the last lines), for failure messages and the timing notes. */
  readonly log: string
}

function run(file: string, args: string[], timeoutMs: number): Promise<{ out: string; ms: number }> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: ROOT, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')} failed (${err.message}):\n${`${stdout}\n${stderr}`.split('\n').slice(-40).join('\n')}`))
      else resolve({ out: `${stdout}${stderr}`, ms: Date.now() - started })
    })
  })
}

const lastLine = (text: string) => text.trim().split('\n').at(-1) ?? ''

let standin: Promise<Built> | undefined
/** The stand-in base image (debootstrap + Node 24), made once per machine. */
export function standinBase(): Promise<Built> {
  standin ??= run(join(IMAGES, 'node-standin.sh'), [], 15 * 60_000).then(({ out, ms }) => ({ tag: lastLine(out), ms, log: out }))
  return standin
}

let caddy: Promise<Built> | undefined
/** Caddy 2.6.2 from Debian's package on a minimal root filesystem. */
export function caddyImage(): Promise<Built> {
  caddy ??= run(join(IMAGES, 'caddy-image.sh'), [], 5 * 60_000).then(({ out, ms }) => ({ tag: lastLine(out), ms, log: out }))
  return caddy
}

let sidecar: Promise<Built> | undefined
/**
 * `docker build` of the top-level Dockerfile on the stand-in base, tagged SIDECAR_IMAGE. Host
 * network for the build: `npm ci` reaches the npm registry the way the host does.
 */
export function sidecarImage(): Promise<Built> {
  sidecar ??= standinBase().then(async (base) => {
    const args = [join(CACHE, '.sidecar-build.lock'), 'docker', 'build', '--network', 'host', '--build-arg', `BASE_IMAGE=${base.tag}`, '--build-arg', 'REVISION=ci', '-t', SIDECAR_IMAGE, ROOT]
    const { out, ms } = await run('flock', args, 15 * 60_000)
    return { tag: SIDECAR_IMAGE, ms, log: out }
  })
  return sidecar
}
