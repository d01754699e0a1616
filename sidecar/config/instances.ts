/**
 * `providers.<kind>` is one block or a list of blocks, each one provider instance with an `id`
 * (default: the kind). The id names the instance in backend keys (`<id>:<backend>`), status,
 * logs and the heartbeat, so `providers.docker: {…}` keeps the keys it always had.
 */
import { z } from 'zod'
import { duration } from './types.js'

const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/

/** A provider block as parsed, with the instance id filled in. */
export type Instance<T> = T & {
  readonly id: string
  /** This instance's full re-list interval (ms); absent: the top-level resync_interval. */
  readonly resync_interval?: number
  /** Most of this instance's backends awake at once (a group counts as one); absent: no cap of its own. */
  readonly max_awake?: number
  /** Old key names this block used (see instancesOf's `oldNames`), logged once as deprecated. */
  readonly aliased?: readonly string[]
}

/** Keys every block accepts besides its kind's own: `id`, `resync_interval` and `max_awake`. */
const RESYNC = 'resync_interval'
const MAX_AWAKE = 'max_awake'
/** `max_awake`, at the top level and in every provider block. */
export const maxAwake = z.number({ error: 'expected a whole number of backends, at least 1' }).int('expected a whole number of backends, at least 1').min(1, 'must be at least 1 (leave it out for no cap)')

/**
 * One block or a non-empty list of blocks of `schema`, each with an optional `id`. Problems
 * inside a block keep their path (`providers.docker[1].label_prefix`). Ids are checked unique
 * across every provider by the main schema.
 */
export function instancesOf<S extends z.ZodType>(kind: string, schema: S, oldNames: Readonly<Record<string, string>> = {}) {
  return z.unknown().transform((value, ctx): Instance<z.output<S>>[] => {
    const many = Array.isArray(value)
    const items: unknown[] = many ? value : [value]
    if (items.length === 0) {
      ctx.addIssue({ code: 'custom', message: `give at least one ${kind} provider block, or leave providers.${kind} out` })
      return z.NEVER
    }
    const out: Instance<z.output<S>>[] = []
    let failed = false
    items.forEach((item, i) => {
      const at = many ? [i] : []
      let id = kind
      let rest = item
      if (item !== null && typeof item === 'object' && !Array.isArray(item) && 'id' in item) {
        const { id: given, ...others } = item as Record<string, unknown>
        rest = others
        if (typeof given === 'string' && INSTANCE_ID.test(given)) id = given
        else {
          failed = true
          ctx.addIssue({ code: 'custom', path: [...at, 'id'], message: 'a provider id is letters, digits, "_" or "-" (max 63), e.g. docker-staging' })
        }
      }
      let resync: number | undefined
      let cap: number | undefined
      const aliased: string[] = []
      if (rest !== null && typeof rest === 'object' && !Array.isArray(rest)) {
        const others: Record<string, unknown> = { ...(rest as Record<string, unknown>) }
        // Old names of the block's keys (same meaning): the value moves to the new name.
        for (const [old, now] of Object.entries(oldNames)) {
          if (!(old in others)) continue
          if (now in others) {
            failed = true
            ctx.addIssue({ code: 'custom', path: [...at, old], message: `${old} is the old name of ${now}; give only ${now}` })
            delete others[old] // said once, not again as an unknown key
            continue
          }
          others[now] = others[old]
          delete others[old]
          aliased.push(old)
        }
        if (RESYNC in others) {
          const parsed = duration.safeParse(others[RESYNC])
          const from = aliased.find((old) => oldNames[old] === RESYNC)
          delete others[RESYNC]
          if (!parsed.success) {
            failed = true
            for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, path: [...at, from ?? RESYNC] } as Parameters<typeof ctx.addIssue>[0])
          } else if (from === undefined || parsed.data > 0) resync = parsed.data // an old name's 0 meant "no extra re-list"
        }
        if (MAX_AWAKE in others) {
          const parsed = maxAwake.safeParse(others[MAX_AWAKE])
          delete others[MAX_AWAKE]
          if (!parsed.success) {
            failed = true
            for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, path: [...at, MAX_AWAKE] } as Parameters<typeof ctx.addIssue>[0])
          } else cap = parsed.data
        }
        rest = others
      }
      const result = schema.safeParse(rest)
      if (!result.success) {
        failed = true
        for (const issue of result.error.issues) ctx.addIssue({ ...issue, path: [...at, ...issue.path] } as Parameters<typeof ctx.addIssue>[0])
        return
      }
      out.push({
        ...(result.data as object),
        id,
        ...(resync !== undefined ? { resync_interval: resync } : {}),
        ...(cap !== undefined ? { max_awake: cap } : {}),
        ...(aliased.length > 0 ? { aliased } : {}),
      } as Instance<z.output<S>>)
    })
    return failed ? z.NEVER : out
  })
}

/**
 * A superRefine for the `providers` block: instance ids are unique across every kind (they key
 * backends, status and logs). The error names the second block and where the first one is.
 */
export function uniqueInstanceIds(providers: Record<string, readonly { readonly id: string }[] | undefined>, ctx: z.RefinementCtx): void {
  const seen = new Map<string, string>()
  for (const [kind, blocks] of Object.entries(providers)) {
    if (!blocks) continue
    blocks.forEach((block, i) => {
      const where = blocks.length > 1 ? `providers.${kind}[${i}]` : `providers.${kind}`
      const first = seen.get(block.id)
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: blocks.length > 1 ? [kind, i] : [kind],
          message: `provider id "${block.id}" is already used by ${first}; give each provider block its own id`,
        })
      } else seen.set(block.id, where)
    })
  }
}
