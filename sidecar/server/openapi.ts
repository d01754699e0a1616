/** An OpenAPI 3.1 description assembled from fastify route schemas (no generator dependency). */

export interface RouteDoc {
  readonly method: string | string[]
  readonly url: string
  readonly schema: {
    readonly summary?: string
    readonly description?: string
    readonly params?: { readonly properties?: Record<string, { readonly description?: string }> }
    readonly headers?: { readonly properties?: Record<string, unknown> }
    readonly body?: unknown
    readonly consumes?: readonly string[]
    readonly response?: Record<string, { readonly description?: string } & Record<string, unknown>>
    readonly security?: readonly Record<string, readonly string[]>[]
  }
}

const CONTENT_TYPE: Record<string, string> = { 'text/event-stream': 'text/event-stream', 'text/html': 'text/html', 'text/plain': 'text/plain' }

export function buildOpenApi(routes: readonly RouteDoc[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const route of routes) {
    const path = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter((m) => m !== 'HEAD')
    for (const method of methods) {
      const s = route.schema
      const parameters = [
        ...Object.entries(s.params?.properties ?? {}).map(([name, p]) => ({ name, in: 'path', required: true, schema: { type: 'string' }, ...(p.description ? { description: p.description } : {}) })),
        ...Object.entries(s.headers?.properties ?? {}).map(([name, schema]) => ({ name, in: 'header', required: false, schema })),
      ]
      const responses: Record<string, unknown> = {}
      for (const [status, schema] of Object.entries(s.response ?? {})) {
        const { description, ...rest } = schema
        const type = typeof description === 'string' && CONTENT_TYPE[description] ? CONTENT_TYPE[description] : Number(status) >= 400 ? 'application/problem+json' : 'application/json'
        responses[status] = { description: description ?? (Number(status) >= 400 ? 'Error (problem+json)' : 'OK'), content: { [type]: { schema: rest } } }
      }
      paths[path] ??= {}
      ;(paths[path] as Record<string, unknown>)[method.toLowerCase()] = {
        summary: s.summary,
        ...(s.description ? { description: s.description } : {}),
        ...(parameters.length ? { parameters } : {}),
        ...(s.body ? { requestBody: { content: Object.fromEntries((s.consumes ?? ['application/json']).map((c) => [c, { schema: s.body }])) } } : {}),
        responses,
        security: s.security ?? [{ bearer: [] }, { session: [] }],
      }
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: 'relight-sidecar admin API', version: '1' },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: '`admin.token` from the configuration' },
        session: { type: 'apiKey', in: 'cookie', name: 'relight_session', description: 'Status page login; state changes also need the x-relight-csrf header' },
      },
    },
    paths,
  }
}

declare module 'fastify' {
  interface FastifySchema {
    /** OpenAPI: one line per route. Routes with a summary are listed in /_relight/admin/openapi.json. */
    summary?: string
    description?: string
    consumes?: readonly string[]
    security?: readonly Record<string, readonly string[]>[]
  }
}
