import { z } from 'zod'
import { backendSettingsShape, duration, onlySleepModes, signalName } from '../../config/types.js'
import { parseHostPattern } from '../../core/hosts.js'

const output = z
  .string()
  .regex(/^(inherit|null|log|file:.+)$/, 'expected inherit, null, log or file:/path')

export const processAppSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'letters, digits, "_", "-", "." (max 63)'),
  /** Names, `*.suffix` wildcards or first labels; anything else is an error naming the entry. */
  hosts: z
    .array(z.string().refine((h) => parseHostPattern(h) !== undefined, { message: 'not a host name, *.wildcard or first label' }))
    .default([]),
  command: z.array(z.string()).min(1, 'give the program and its arguments, e.g. [node, server.js]'),
  args: z.array(z.string()).default([]),
  dir: z.string().optional(),
  env: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)).default({}),
  user: z.string().optional(),
  /** Address the app listens on; replica N listens on port + N. */
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(1).max(65535).optional(),
  replicas: z.number().int().min(1).max(64).default(1),
  restart: z.enum(['always', 'on_failure', 'never']).default('always'),
  stop_signal: signalName.default('SIGTERM'),
  grace_period: duration.prefault('10s'),
  always_on: z.boolean().default(false),
  stdout: output.default('inherit'),
  stderr: output.default('inherit'),
  ...backendSettingsShape,
})

export const processConfigSchema = z
  .strictObject({
    apps: z.array(processAppSchema).default([]),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>()
    cfg.apps.forEach((app, i) => {
      if (seen.has(app.name)) {
        ctx.addIssue({ code: 'custom', path: ['apps', i, 'name'], message: `duplicate app name "${app.name}"` })
      }
      seen.add(app.name)
      if (app.hosts.length > 0 && app.port === undefined) {
        ctx.addIssue({ code: 'custom', path: ['apps', i, 'port'], message: 'required when hosts are declared (the port the app listens on)' })
      }
      onlySleepModes(['stop', 'pause'], 'process apps', (key) => ['apps', i, key])(app, ctx)
      if (app.port !== undefined && app.port + app.replicas - 1 > 65535) {
        ctx.addIssue({ code: 'custom', path: ['apps', i, 'replicas'], message: `replica ports ${app.port}…${app.port + app.replicas - 1} go past 65535` })
      }
    })
  })

export type ProcessAppConfig = z.output<typeof processAppSchema>
export type ProcessConfig = z.output<typeof processConfigSchema>
