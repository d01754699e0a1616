import { z } from 'zod'
import { backendSettingsShape, noBusyCpu, onlySleepModes } from '../../config/types.js'

/**
 * `providers.swarm`. Per-backend keys (idle_timeout, readiness…) apply to every service; the
 * service's own labels override them. The only sleep mode is `scale` (to 0 replicas).
 */
export const swarmConfigSchema = z
  .strictObject({
    /** A manager's Engine API: unix socket path (`/var/run/docker.sock`, `unix:///…`) or `tcp://host:port`. */
    socket: z.string().min(1).default('/var/run/docker.sock'),
    /** Pin the Engine API version (`1.41`); default: the engine's own. */
    api_version: z.string().regex(/^\d+\.\d+$/, 'expected a version such as 1.41').optional(),
    /** Service labels are `<label_prefix>.domain`, `<label_prefix>.port`… */
    label_prefix: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'letters, digits, "_", "-", "."').default('relight'),
    ...backendSettingsShape,
  })
  .superRefine(onlySleepModes(['scale'], 'swarm services'))
  .superRefine(noBusyCpu('swarm'))

export type SwarmConfig = z.output<typeof swarmConfigSchema>
