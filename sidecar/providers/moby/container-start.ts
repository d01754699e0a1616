/** Start a created or stopped container. Idempotent: 304 (already started) is success. */
import { type ContainerApi, postContainer } from './containers.js'

export function startContainer(api: ContainerApi, id: string, signal: AbortSignal): Promise<void> {
  return postContainer(api, id, 'start', signal)
}
