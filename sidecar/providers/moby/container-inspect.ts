/** Inspect and list containers (both variants: the paths and answers are alike). */
import type { ContainerApi, ContainerInspect, ContainerSummary, Filters } from './containers.js'
import { containerPath, notFoundAsBackend } from './containers.js'

/** RELIGHT_ERR_BACKEND_NOT_FOUND when the container does not exist. */
export async function inspectContainer(api: ContainerApi, id: string, signal: AbortSignal): Promise<ContainerInspect> {
  try {
    return await api.engine.json<ContainerInspect>('GET', containerPath(id, 'json'), { signal })
  } catch (err) {
    throw notFoundAsBackend(err, id, api)
  }
}

/** Every container (any state) matching `filters`. */
export async function listContainers(api: ContainerApi, filters: Filters, signal: AbortSignal): Promise<ContainerSummary[]> {
  return (await api.engine.json<ContainerSummary[] | null>('GET', '/containers/json', { query: { all: true, filters }, signal })) ?? []
}
