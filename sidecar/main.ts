#!/usr/bin/env node
/** relight-sidecar command line: serve, check, snippet. */
import { WaitingPages } from './pages/template.js'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { loadConfig } from './config/load.js'
import type { Config } from './config/schema.js'
import { isRelightError } from './core/errors.js'
import { type Sidecar, startSidecar } from './daemon.js'
import { createLogger, type LogFormat } from './logger.js'
import { createProviders } from './providers/index.js'
import { SystemResolver } from './routing/stateful/resolver.js'

const SNIPPET_FILE = new URL('../../caddy/relight.caddy', import.meta.url)

const HELP: Record<string, string> = {
  main: `relight-sidecar — scale-to-zero for stock Caddy

Usage:
  relight-sidecar serve --config FILE    run the sidecar
  relight-sidecar check --config FILE    validate the config and probe every provider
  relight-sidecar snippet                print the Caddy snippet to import
  relight-sidecar <command> --help       help for one command

Docs: README.md (configuration reference, Caddy set-up, error codes).`,
  serve: `relight-sidecar serve --config FILE [--log-format json|pretty]

Runs the sidecar: answers Caddy's forward_auth (/_relight/auth) and on-demand TLS ask
(/_relight/ask), wakes sleeping backends, puts idle ones to sleep. SIGTERM or SIGINT stop it
gracefully (child processes get their stop_signal and grace_period).

  --config, -c FILE     YAML configuration (required)
  --log-format FORMAT   json (default when stdout is not a terminal) or pretty`,
  check: `relight-sidecar check --config FILE

Validates the configuration, then asks each provider whether it can work (engine reachable,
permissions, commands present, ports free) and explains each problem in words.
Exits 0 when everything is fine, 1 on any problem, 2 on a usage error.

  --config, -c FILE     YAML configuration (required)`,
  snippet: `relight-sidecar snippet

Prints caddy/relight.caddy, the Caddyfile snippet to import. Use it in a site block as
  import relight 127.0.0.1:9123          (or unix//run/relight/sidecar.sock)`,
}

function usage(command: string, message?: string): never {
  if (message) process.stderr.write(`relight-sidecar: ${message}\n\n`)
  ;(message ? process.stderr : process.stdout).write(`${HELP[command] ?? HELP.main}\n`)
  process.exit(message ? 2 : 0)
}

function readConfig(file: string): Config {
  try {
    return loadConfig(file)
  } catch (err) {
    if (isRelightError(err, 'RELIGHT_ERR_CONFIG')) {
      process.stderr.write(`relight-sidecar: invalid configuration\n${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
}

async function serve(file: string, format: LogFormat): Promise<void> {
  const config = readConfig(file)
  const logger = createLogger(config.log_level, format)
  const baseDir = dirname(resolve(file))
  const providers = createProviders(config, logger, { baseDir })
  // Whatever ends this process, supervised children do not outlive it (a no-op after a
  // graceful shutdown, which already stopped them).
  process.on('exit', () => {
    for (const p of providers) p.terminateNow?.()
  })
  const fatal = (what: string) => (err: unknown) => {
    logger.fatal({ err }, what)
    logger.flush()
    process.exit(1)
  }
  process.on('uncaughtException', fatal('uncaught exception'))
  process.on('unhandledRejection', fatal('unhandled rejection'))

  let sidecar: Sidecar | undefined
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    stopping = true
    logger.info({ signal }, 'stopping: closing the server and stopping child processes')
    setTimeout(() => {
      logger.error({ timeout_ms: config.shutdown_timeout }, 'shutdown took too long; killing child processes and exiting')
      process.exit(1)
    }, config.shutdown_timeout).unref()
    const closing = sidecar ? sidecar.close() : Promise.all(providers.map((p) => p.close?.())).then(() => undefined)
    closing.then(
      () => {
        logger.info('stopped')
        logger.flush()
        setImmediate(() => process.exit(0))
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))

  try {
    sidecar = await startSidecar(config, { logger, baseDir, providers })
  } catch (err) {
    logger.fatal({ err }, 'could not start')
    process.exitCode = 1
    return
  }
  if (stopping) await sidecar.close() // a signal came during start-up
}

/** Resolve every stateful upstream host once, as the sidecar will. Returns the number of problems. */
async function checkStateful(config: Config, out: (ok: boolean, message: string) => void): Promise<number> {
  if (config.stateful.length === 0) return 0
  const resolver = new SystemResolver(config.dns.servers)
  let problems = 0
  for (const [i, site] of config.stateful.entries()) {
    for (const upstream of site.upstreams) {
      try {
        const answer = await resolver.resolve(upstream.host)
        const ttl = Math.min(...answer.map((a) => a.ttl))
        out(true, `stateful[${i}] ${site.hosts.join(', ')}: ${upstream.host} → ${answer.map((a) => a.address).join(', ')}${Number.isFinite(ttl) ? ` (ttl ${ttl}s)` : ''}, pods in ${upstream.cidr} on port ${upstream.port}`)
      } catch (err) {
        problems++
        out(false, `stateful[${i}] ${site.hosts.join(', ')}: ${upstream.host} does not resolve (${(err as Error).message}); requests other than /~/{token}/… would get 502`)
      }
    }
  }
  return problems
}

async function check(file: string): Promise<void> {
  const config = readConfig(file)
  const out = (ok: boolean, message: string) => process.stdout.write(`${ok ? 'ok     ' : 'PROBLEM'}  ${message}\n`)
  let problems = 0
  out(true, `${file}: configuration is valid`)
  try {
    WaitingPages.load(config, dirname(resolve(file)))
  } catch (err) {
    problems++
    out(false, (err as Error).message)
  }
  if (config.access_log) out(true, `access_log: listening at ${config.access_log}; Caddy's site blocks need  log { output net ${caddyNetAddress(config.access_log)}  format json }`)
  else out(true, 'access_log is not configured: idle means "no request started for idle_timeout"; open websocket/SSE streams are not seen (configure it to fix)')
  const logger = createLogger('silent', 'json')
  const providers = createProviders(config, logger, { baseDir: dirname(resolve(file)) })
  if (providers.length === 0 && config.stateful.length === 0) {
    out(false, 'no provider is configured (providers.process, providers.docker, …): nothing can be routed')
    problems++
  }
  problems += await checkStateful(config, out)
  for (const provider of providers) {
    const signal = AbortSignal.timeout(15_000)
    try {
      const backends = await provider.list(signal)
      out(true, `${provider.kind}: ${backends.length} backend(s): ${backends.map((b) => `${b.name} [${b.hosts.join(', ') || 'no hosts'}] ${b.state}`).join('; ') || 'none'}`)
    } catch (err) {
      problems++
      out(false, `${provider.kind}: cannot list backends: ${(err as Error).message}`)
    }
    for (const result of (await provider.check?.(signal).catch((err: unknown) => [{ ok: false, message: (err as Error).message }])) ?? []) {
      if (!result.ok) problems++
      out(result.ok, `${provider.kind}: ${result.message}`)
    }
    await provider.close?.()
  }
  process.stdout.write(problems === 0 ? '\nall checks passed\n' : `\n${problems} problem(s) found\n`)
  process.exitCode = problems === 0 ? 0 : 1
}

/** `unix:/run/x.sock` → `unix//run/x.sock` (Caddy's network address form). */
function caddyNetAddress(address: string): string {
  return address.startsWith('unix:') ? `unix/${address.slice('unix:'.length)}` : address
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') usage('main')
  if (!Object.hasOwn(HELP, command) || command === 'main') usage('main', `unknown command "${command}"`)
  let values: { config?: string; help?: boolean; 'log-format'?: string }
  try {
    ;({ values } = parseArgs({
      args: rest,
      options: {
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
        'log-format': { type: 'string' },
      },
      strict: true,
    }))
  } catch (err) {
    usage(command, (err as Error).message)
  }
  if (values.help) usage(command)
  if (command === 'snippet') {
    process.stdout.write(readFileSync(SNIPPET_FILE, 'utf8'))
    return
  }
  if (!values.config) usage(command, '--config FILE is required')
  if (command === 'check') return check(values.config)
  const format = values['log-format'] ?? (process.stdout.isTTY ? 'pretty' : 'json')
  if (format !== 'json' && format !== 'pretty') usage(command, '--log-format is json or pretty')
  return serve(values.config, format)
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`relight-sidecar: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
