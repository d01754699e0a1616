import type { BenchContext } from './context.js'
import { Skip } from './context.js'

export async function runScale(_ctx: BenchContext): Promise<unknown> {
  throw new Skip('not written yet')
}
