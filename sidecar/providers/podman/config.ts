import { z } from 'zod'
import { backendSettingsShape, duration, onlySleepModes } from '../../config/types.js'

/**
 * `providers.podman`. Option names follow caddy-relight-podman (`socket` for its
 * `podman_socket`); per-backend keys here apply to every Podman container and are overridden by
 * the container's own labels.
 */
export const podmanConfigSchema = z.strictObject({
  socket: z.string().min(1).default('/run/podman/podman.sock'),
  label_prefix: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'letters, digits, "_", "-", "."')
    .default('relight'),
  /** Container port proxied to when a container has no `<prefix>.port` label (default: defaults.app_port). */
  app_port: z.number().int().min(1).max(65535).optional(),
  /** Grace period libpod gives a container on `stop` before SIGKILL; default: the container's own. */
  stop_timeout: duration.optional(),
  /** With containers on several networks: whose IP to proxy to (as providers.docker.network). */
  network: z.string().min(1).optional(),
  ...backendSettingsShape,
}).superRefine(onlySleepModes(['checkpoint', 'pause', 'stop'], 'podman containers'))

export type PodmanConfig = z.output<typeof podmanConfigSchema>
