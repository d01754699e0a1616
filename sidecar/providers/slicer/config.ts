import { z } from 'zod'
import { backendSettingsShape, noBusyCpu } from '../../config/types.js'

/**
 * `providers.slicer`: one SlicerVM API. Per-backend overrides here apply to every routed VM;
 * a VM's own `relight.*=` tags override them (see tags.ts).
 *
 * `sleep: stop` is refused here on purpose: Slicer relaunches only persistent VMs, and whether
 * a VM is persistent is known per VM, at discovery. A persistent VM opts in with the tag
 * `relight.sleep=stop`; a non-persistent VM tagged so is paused instead (logged once).
 */
const slicerSleep = z.string().superRefine((mode, ctx) => {
  if (mode === 'pause' || mode === 'suspend') return
  ctx.addIssue({
    code: 'custom',
    message:
      mode === 'stop'
        ? 'stop is refused for the whole slicer block: only persistent VMs can be relaunched. Tag each persistent VM with relight.sleep=stop instead'
        : `slicer VMs sleep with pause or suspend (or stop, per persistent VM, with the tag relight.sleep=stop), not "${mode}"`,
  })
})

export const slicerConfigSchema = z
  .strictObject({
    /** `http(s)://host:port[/prefix]`, or a unix socket path (`~/` expanded, `unix:` prefix allowed). */
    url: z.string().min(1, 'give the Slicer API URL or its unix socket path'),
    /** Bearer token; optional on a unix socket. */
    token: z.string().min(1).optional(),
    /** Only nodes of this host group are routed. */
    host_group: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'a Slicer host group name (letters, digits, "_", "-", ".")')
      .optional(),
    /** Port the app listens on inside each VM, unless the VM's tag relight.port=N says otherwise. */
    app_port: z.number().int().min(1).max(65535).default(8080),
    ...backendSettingsShape,
    sleep: slicerSleep.transform((m) => m as 'pause' | 'suspend').optional(),
    fallback_sleep: slicerSleep.transform((m) => m as 'pause' | 'suspend').optional(),
  })
  .superRefine(noBusyCpu('slicer'))
  .superRefine((cfg, ctx) => {
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(cfg.url)?.[1]?.toLowerCase()
    if (scheme !== undefined && scheme !== 'http' && scheme !== 'https') {
      ctx.addIssue({ code: 'custom', path: ['url'], message: `expected an http(s):// URL or a unix socket path, not ${scheme}://` })
    }
    if ((scheme === 'http' || scheme === 'https') && cfg.token === undefined) {
      ctx.addIssue({ code: 'custom', path: ['token'], message: 'required with an http(s) url (the Slicer API token; e.g. token: "${SLICER_TOKEN}")' })
    }
  })

export type SlicerConfig = z.output<typeof slicerConfigSchema>
