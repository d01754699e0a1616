/**
 * Stop a container (a paused one too). Idempotent: 304 (already stopped) is success.
 * `timeoutSeconds`: the grace period before SIGKILL; undefined: the container's own. Docker
 * names the parameter `t`, libpod `timeout`.
 */
import { type ContainerApi, postContainer } from './containers.js'

export function stopContainer(api: ContainerApi, id: string, timeoutSeconds: number | undefined, signal: AbortSignal): Promise<void> {
  return postContainer(api, id, 'stop', signal, { [api.variant === 'docker' ? 't' : 'timeout']: timeoutSeconds })
}
