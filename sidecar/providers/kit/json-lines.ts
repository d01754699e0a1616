/**
 * Newline-delimited JSON from a streaming HTTP body (Docker `/events`, Kubernetes watches). A
 * line that does not parse is skipped: for both engines the periodic re-list is the truth. The
 * body is destroyed when the reader stops; transport errors go through `mapError`.
 */
export async function* jsonLines<T>(body: AsyncIterable<unknown> & { destroy(): unknown }, mapError: (err: unknown) => Error): AsyncGenerator<T> {
  let buffer = ''
  try {
    for await (const chunk of body) {
      buffer += (chunk as Buffer).toString('utf8')
      let nl: number
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim()
        buffer = buffer.slice(nl + 1)
        if (line === '') continue
        let parsed: T
        try {
          parsed = JSON.parse(line) as T
        } catch {
          continue
        }
        yield parsed
      }
    }
  } catch (err) {
    throw mapError(err)
  } finally {
    body.destroy()
  }
}
