/**
 * Swarm provider, group dependencies: after a routed member of a group sleeps, the provider scales the group's
 * dependencies (services without a domain) down with only their own version as a guard. A
 * dependency another sidecar has just woken (its wake writes relight.last_activity = now on the
 * dependency, then waits for its task, then scales the routed member up) is scaled down under
 * that wake: the member comes up without its database, or the other wake waits until wake_timeout.
 * Recorded-engine set-up from test/helpers/swarm-recorded.ts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Service } from '../../sidecar/providers/swarm/services.js'
import { JSON_HEADERS, recordedSwarm } from '../helpers/swarm-recorded.js'

const svc = (id: string, replicas: number, labels: Record<string, string>): Service =>
  ({
    ID: id,
    Version: { Index: 7 },
    Spec: {
      Name: id,
      Labels: { 'relight.group': 'shop', ...labels },
      Mode: { Replicated: { Replicas: replicas } },
      EndpointSpec: { Mode: 'dnsrr', Ports: [{ Protocol: 'tcp', TargetPort: 8080, PublishMode: 'host' }] },
      TaskTemplate: { ContainerSpec: { Image: 'sha256:abc' } },
    },
  }) as unknown as Service

describe('swarm: group dependencies', () => {
  const swarm = recordedSwarm({ callHistory: true })

  it('does not scale down a dependency another sidecar woke a moment ago (its wake of the routed member is under way)', async () => {
    const pool = swarm.agent.get('http://localhost')
    const old = new Date(Date.now() - 3_600_000).toISOString()
    const now = new Date().toISOString()
    // B sleeps `shop`; sidecar A is waking `admin` (asleep so far): it has scaled the database up
    // (last_activity = now, written by A's scaleUp) and waits for its task before scaling admin up.
    const shop = svc('shop', 1, { 'relight.domain': 'shop.example.com', 'relight.last_activity': old })
    const admin = svc('admin', 0, { 'relight.domain': 'admin.example.com', 'relight.last_activity': old })
    const db = svc('db', 1, { 'relight.last_activity': now })
    pool.intercept({ method: 'GET', path: (p) => p.split('?')[0] === '/services/shop' }).reply(200, shop, JSON_HEADERS)
    pool.intercept({ method: 'POST', path: (p) => p.split('?')[0] === '/services/shop/update' }).reply(200, {}, JSON_HEADERS)
    pool.intercept({ method: 'GET', path: (p) => p.split('?')[0] === '/services' }).reply(200, [svc('shop', 0, shop.Spec.Labels ?? {}), admin, db], JSON_HEADERS)
    pool.intercept({ method: 'POST', path: (p) => p.split('?')[0] === '/services/db/update' }).reply(200, {}, JSON_HEADERS)
    await swarm.provider.sleep('shop', 'scale', AbortSignal.timeout(5000), { idleTimeout: 60_000 })
    const dbWrites = (swarm.agent.getCallHistory()?.calls() ?? []).filter((c) => c.method === 'POST' && c.path.startsWith('/services/db/update'))
    assert.equal(dbWrites.length, 0, 'the database another sidecar just woke was scaled to 0')
  })
})
