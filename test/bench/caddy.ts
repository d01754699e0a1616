/**
 * Caddy processes for the benchmarks: `caddy run` with a generated Caddyfile that imports the
 * relight snippet, admin off, plain HTTP, its own storage and HOME under the bench work dir.
 * (Not test/helpers/caddy.ts: its `persist_config` global option is rejected by Caddy 2.6.2.)
 */
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { SNIPPET } from '../helpers/caddy.js'
import { stop, track } from './procs.js'

export interface BenchCaddy {
  readonly pid: number
  close(): Promise<void>
}

let count = 0

export async function startBenchCaddy(dir: string, sites: string): Promise<BenchCaddy> {
  const home = join(dir, `caddy-${++count}`)
  mkdirSync(home, { recursive: true })
  const file = join(home, 'Caddyfile')
  writeFileSync(file, `{\n\tadmin off\n\tauto_https off\n\tstorage file_system ${join(home, 'data')}\n}\nimport ${SNIPPET}\n${sites}`)
  const child = spawn('caddy', ['run', '--config', file, '--adapter', 'caddyfile'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HOME: home, XDG_DATA_HOME: join(home, 'data'), XDG_CONFIG_HOME: join(home, 'config') },
  })
  track(child)
  let output = ''
  const collect = (d: Buffer) => {
    // Keep only the start-up lines: Caddy logs little once serving (no access log unless asked).
    if (output.length < 100_000) output += d.toString()
  }
  child.stdout.on('data', collect)
  child.stderr.on('data', collect)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`caddy did not start within 15 s:\n${output}`))
    }, 15_000)
    const check = () => {
      if (output.includes('serving initial configuration')) {
        clearTimeout(timer)
        child.off('exit', onExit)
        resolve()
      }
    }
    const onExit = (code: number | null) => {
      clearTimeout(timer)
      reject(new Error(`caddy exited with code ${code}:\n${output}`))
    }
    child.stdout.on('data', check)
    child.stderr.on('data', check)
    child.once('exit', onExit)
  })
  return { pid: child.pid as number, close: () => stop(child) }
}

/** A site on 127.0.0.1:port, whatever the Host header says. */
export function site(port: number, body: string): string {
  return `http://:${port} {\n\tbind 127.0.0.1\n${body
    .trim()
    .split('\n')
    .map((l) => `\t${l}`)
    .join('\n')}\n}\n`
}
