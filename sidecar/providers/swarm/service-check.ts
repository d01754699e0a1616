/** `check()`: the engine is a swarm manager; the labelled services are routable (mode, host-mode port, labels). */
import type { CheckResult } from '../../core/provider.js'
import { isRelightError } from '../../core/errors.js'
import { domainLabel } from '../kit/labels.js'
import { type SwarmContext, nameOf } from './context.js'
import { readServiceLabels } from './labels.js'
import { targetPort } from './upstreams.js'

export async function checkSwarm(ctx: SwarmContext, where: string, signal: AbortSignal): Promise<CheckResult[]> {
  const results: CheckResult[] = []
  let info
  try {
    info = await ctx.api.info(signal)
  } catch (err) {
    return [{ ok: false, message: `cannot use the Docker engine for swarm: ${isRelightError(err) ? err.message : String(err)}` }]
  }
  const swarm = info.Swarm
  if (swarm?.LocalNodeState !== 'active') {
    return [
      {
        ok: false,
        message: `the Docker engine at ${where} is not part of a swarm (state ${swarm?.LocalNodeState ?? 'unknown'}${swarm?.Error ? `: ${swarm.Error}` : ''}): run docker swarm init, or join it to a swarm`,
      },
    ]
  }
  if (!swarm.ControlAvailable) {
    return [
      {
        ok: false,
        message: `node ${swarm.NodeID ?? '?'} (${swarm.NodeAddr ?? where}) is a swarm worker, not a manager: Swarm answers service and task calls only on managers. Point providers.swarm.socket at a manager's Engine API, or run this sidecar on a manager`,
      },
    ]
  }
  results.push({ ok: true, message: `Docker Engine ${info.ServerVersion ?? '?'} at ${where} is a swarm manager (node ${swarm.NodeID ?? '?'}, ${swarm.NodeAddr ?? '?'})` })
  try {
    const services = await ctx.api.list({ label: [domainLabel(ctx.prefix)] }, signal)
    results.push({
      ok: true,
      message:
        services.length === 0
          ? `no service carries the ${domainLabel(ctx.prefix)} label yet (docker service create --label ${domainLabel(ctx.prefix)}=app.example.com …)`
          : `${services.length} service(s) labelled ${domainLabel(ctx.prefix)}: ${services.map(nameOf).join(', ')}`,
    })
    for (const s of services) {
      const facts = readServiceLabels(s.Spec.Labels ?? {}, ctx.prefix)
      for (const p of facts.problems) results.push({ ok: false, message: `service ${nameOf(s)}: ${p}` })
      if (!s.Spec.Mode?.Replicated) {
        results.push({ ok: false, message: `service ${nameOf(s)} runs in ${s.Spec.Mode?.Global ? 'global' : 'job'} mode: only replicated services can be scaled to zero (docker service create --mode replicated); it is not routed` })
        continue
      }
      const port = targetPort(s, facts.port, ctx.prefix)
      if ('problem' in port) results.push({ ok: false, message: `service ${nameOf(s)} ${port.problem}; it is not routed` })
    }
  } catch (err) {
    results.push({ ok: false, message: `cannot list services: ${(err as Error).message}` })
  }
  return results
}
