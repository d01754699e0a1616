/**
 * Where Caddy reaches a container. Rules, first match wins (documented in
 * examples/docker-compose/README.md):
 * 1. `network_mode: host` → `127.0.0.1:<port>` (the app must listen on loopback or all addresses);
 * 2. `providers.docker.network` names a network the container is on → that network's IP;
 * 3. the port is published on the host → the host binding (`0.0.0.0`/empty → 127.0.0.1,
 *    `::` → [::1]);
 * 4. the container's IP on its network (a user-defined network or the default bridge); with
 *    several networks and no `network` configured, the first by name, with a warning;
 * 5. nothing known (stopped container on a bridge, `network_mode: none` or `container:…`):
 *    no upstream until it runs.
 * Works on `GET /containers/{id}/json` answers (Docker and Podman's compatible API).
 */

export interface PortBinding {
  readonly HostIp?: string
  readonly HostPort?: string
}

export interface NetworkEndpoint {
  readonly IPAddress?: string
  readonly GlobalIPv6Address?: string
}

/** The parts of a container inspect answer the upstream rules read. */
export interface UpstreamInput {
  readonly HostConfig?: { readonly NetworkMode?: string; readonly PortBindings?: Record<string, PortBinding[] | null> | null }
  readonly NetworkSettings?: {
    readonly Ports?: Record<string, PortBinding[] | null> | null
    readonly Networks?: Record<string, NetworkEndpoint> | null
  }
}

export interface UpstreamChoice {
  readonly upstream?: string
  /** Which rule chose it: host-network, network, published, container-ip, none. */
  readonly rule: 'host-network' | 'network' | 'published' | 'container-ip' | 'none'
  readonly warning?: string
}

function hostPort(host: string, port: number | string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

function bindingAddress(binding: PortBinding): string | undefined {
  const port = binding.HostPort
  if (!port || !/^\d+$/.test(port) || port === '0') return undefined
  const ip = binding.HostIp ?? ''
  if (ip === '' || ip === '0.0.0.0') return hostPort('127.0.0.1', port)
  if (ip === '::') return hostPort('::1', port)
  return hostPort(ip, port)
}

export function chooseUpstream(container: UpstreamInput, port: number, network?: string): UpstreamChoice {
  const mode = container.HostConfig?.NetworkMode ?? ''
  if (mode === 'host') return { upstream: hostPort('127.0.0.1', port), rule: 'host-network' }
  if (mode === 'none' || mode.startsWith('container:')) {
    return { rule: 'none', warning: `network mode "${mode}" gives the container no address of its own; use host networking, publish the port, or attach a network` }
  }
  const networks = container.NetworkSettings?.Networks ?? {}
  const ipOf = (ep: NetworkEndpoint | undefined) => (ep?.IPAddress ? ep.IPAddress : ep?.GlobalIPv6Address || undefined)
  let warning: string | undefined
  if (network !== undefined) {
    const ip = ipOf(networks[network])
    if (ip) return { upstream: hostPort(ip, port), rule: 'network' }
    if (!(network in networks)) warning = `the container is not on network "${network}" (providers.docker.network)`
  }
  const key = `${port}/tcp`
  // A running container reports live bindings; a stopped one keeps the configured ones.
  for (const bindings of [container.NetworkSettings?.Ports?.[key], container.HostConfig?.PortBindings?.[key]]) {
    for (const b of bindings ?? []) {
      const address = bindingAddress(b)
      if (address) return { upstream: address, rule: 'published', ...(warning ? { warning } : {}) }
    }
  }
  const named = Object.keys(networks)
    .sort()
    .filter((name) => ipOf(networks[name]) !== undefined)
  const first = named[0]
  if (first !== undefined) {
    const upstream = hostPort(ipOf(networks[first]) as string, port)
    if (named.length > 1 && warning === undefined) {
      warning = `the container is on several networks (${named.join(', ')}); using ${first}. Set providers.docker.network to choose`
    }
    return { upstream, rule: 'container-ip', ...(warning ? { warning } : {}) }
  }
  return { rule: 'none', ...(warning ? { warning } : {}) }
}
