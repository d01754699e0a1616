/**
 * Where a service's running tasks answer. Host-mode published ports only: the ingress routing
 * mesh and service VIPs need IPVS (absent on many small hosts), and overlay task IPs are not
 * reachable from the host. A task on this sidecar's own node is reached on 127.0.0.1 (host mode
 * binds 0.0.0.0); a task on another node on that node's address (`Status.Addr`, or the manager
 * address when a manager reports 0.0.0.0).
 */
import type { PortConfig, Service, SwarmNode, Task } from './services.js'

export type PortChoice = { readonly target: number } | { readonly problem: string }

function hostPorts(ports: readonly PortConfig[] | null | undefined): PortConfig[] {
  return (ports ?? []).filter((p) => p.PublishMode === 'host' && (p.Protocol ?? 'tcp') === 'tcp' && typeof p.TargetPort === 'number')
}

/**
 * The target port requests go to: the `<prefix>.port` label, else the only host-mode port the
 * service publishes. A port that is not published in host mode is a problem, in words.
 */
export function targetPort(service: Service, labelPort: number | undefined, prefix: string): PortChoice {
  const published = hostPorts(service.Spec.EndpointSpec?.Ports)
  if (labelPort !== undefined) {
    if (published.some((p) => p.TargetPort === labelPort)) return { target: labelPort }
    return {
      problem: `target port ${labelPort} (${prefix}.port) is not published in host mode; publish it with --publish mode=host,target=${labelPort} (the routing mesh is not used)`,
    }
  }
  const targets = [...new Set(published.map((p) => p.TargetPort as number))]
  if (targets.length === 1) return { target: targets[0] as number }
  if (targets.length === 0) {
    return { problem: 'publishes no port in host mode; publish one with --publish mode=host,target=PORT (the routing mesh is not used)' }
  }
  return { problem: `publishes several host-mode ports (${targets.join(', ')}); say which with the ${prefix}.port label` }
}

/** `host:port` of each running task, in slot order, without duplicates. */
export function taskUpstreams(tasks: readonly Task[], target: number, nodeHost: (nodeId: string | undefined) => string | undefined): string[] {
  const out: string[] = []
  const sorted = [...tasks].sort((a, b) => (a.Slot ?? 0) - (b.Slot ?? 0))
  for (const task of sorted) {
    if (task.Status.State !== 'running' || task.DesiredState !== 'running') continue
    const port = hostPorts(task.Status.PortStatus?.Ports).find((p) => p.TargetPort === target)?.PublishedPort
    const host = nodeHost(task.NodeID)
    if (port === undefined || host === undefined) continue
    const upstream = `${host.includes(':') ? `[${host}]` : host}:${port}`
    if (!out.includes(upstream)) out.push(upstream)
  }
  return out
}

/** A node's address for upstreams: `Status.Addr`, or the manager address when it is 0.0.0.0. */
export function nodeAddress(node: SwarmNode): string | undefined {
  const addr = node.Status?.Addr
  if (addr && addr !== '0.0.0.0') return addr
  const manager = node.ManagerStatus?.Addr
  if (!manager) return undefined
  const colon = manager.lastIndexOf(':')
  return (colon > 0 ? manager.slice(0, colon) : manager).replace(/^\[|\]$/g, '')
}
