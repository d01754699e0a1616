import { z } from 'zod'
import { backendSettingsShape, duration, onlySleepModes } from '../../config/types.js'

/** `providers.docker`. Per-backend keys (idle_timeout, sleep…) apply to every container; labels override them. */
export const dockerConfigSchema = z
  .strictObject({
    /** Unix socket path (`/var/run/docker.sock`, `unix:///…`) or `tcp://host:port` / `http://host:port`. */
    socket: z.string().min(1).default('/var/run/docker.sock'),
    /** Pin the Engine API version (`1.41`); default: the engine's own. */
    api_version: z.string().regex(/^\d+\.\d+$/, 'expected a version such as 1.41').optional(),
    /** Labels are `<label_prefix>.domain`, `<label_prefix>.port`… */
    label_prefix: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'letters, digits, "_", "-", "."').default('relight'),
    /** Network whose container IP is the upstream when a container is on several. */
    network: z.string().min(1).optional(),
    /** Grace period of `docker stop` before SIGKILL. */
    stop_timeout: duration.prefault('10s'),
    /**
     * true: labelled containers already running when the sidecar starts sleep after idle_timeout
     * like any other. false: they are left running (always_on) until they stop or pause for
     * another reason; from then on they sleep when idle.
     */
    auto_sleep_on_start: z.boolean().default(true),
    /**
     * Container port when the container has no `<prefix>.port` label (before the only exposed
     * port and defaults.app_port: moby/container-info.ts). Old name `port`, still accepted.
     */
    app_port: z.number().int().min(1).max(65535).optional(),
    ...backendSettingsShape,
  })
  .superRefine(onlySleepModes(['pause', 'stop'], 'docker containers'))

export type DockerConfig = z.output<typeof dockerConfigSchema>
