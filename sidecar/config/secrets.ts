/**
 * Shared secrets in the config (`admin.token`, `webhooks[].secret`): a guessable one is a
 * configuration error naming the key. `admin.token_file` reads the token from a file only its
 * owner (and group) can read, so a unit file or an operator's shell need not carry it.
 */
import { readFileSync, statSync } from 'node:fs'
import { isAbsolute } from 'node:path'
import { z } from 'zod'
import { weakSecretProblem } from './types.js'

/** The token in `file`, or why it cannot be used (the message names `admin.token_file`). */
export function readTokenFile(file: string): { token: string } | { problem: string } {
  if (!isAbsolute(file)) return { problem: `use an absolute path (got ${file})` }
  let text: string
  try {
    const st = statSync(file)
    if (!st.isFile()) return { problem: `${file} is not a regular file` }
    if ((st.mode & 0o007) !== 0) return { problem: `${file} can be read or written by every user (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it (640 with a group that needs it, e.g. prometheus)` }
    if ((st.mode & 0o020) !== 0) return { problem: `${file} is writable by its group (mode ${(st.mode & 0o777).toString(8)}); chmod g-w it` }
    text = readFileSync(file, 'utf8')
  } catch (err) {
    return { problem: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` }
  }
  const token = text.replace(/\r?\n$/, '') // `openssl rand -hex 32 > file` ends it with a newline
  const weak = weakSecretProblem(token)
  return weak === undefined ? { token } : { problem: `the token in ${file} ${weak}` }
}

/**
 * `admin`: `{ token }` or `{ token_file }` (exactly one). The output always carries `token`, so
 * nothing else reads the file; the file is read when the config is loaded (start, check, reload).
 */
export const adminSchema = z
  .strictObject({
    token: z.string().optional(),
    /** Absolute path of a file holding the token (one line), mode 0600 or 0640. */
    token_file: z.string().min(1).optional(),
  })
  .transform((admin, ctx): { token: string; token_file?: string } => {
    if ((admin.token === undefined) === (admin.token_file === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'set exactly one of token and token_file' })
      return z.NEVER
    }
    if (admin.token !== undefined) {
      const problem = weakSecretProblem(admin.token)
      if (problem === undefined) return { token: admin.token }
      ctx.addIssue({ code: 'custom', path: ['token'], message: problem })
      return z.NEVER
    }
    const read = readTokenFile(admin.token_file as string)
    if ('token' in read) return { token: read.token, token_file: admin.token_file as string }
    ctx.addIssue({ code: 'custom', path: ['token_file'], message: read.problem })
    return z.NEVER
  })
