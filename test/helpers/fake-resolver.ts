/** A Resolver whose answers a test sets and changes (a "rollout" repoints a name). */
import type { ResolvedAddress, Resolver } from '../../sidecar/routing/stateful/resolver.js'

export class FakeResolver implements Resolver {
  private readonly answers = new Map<string, ResolvedAddress[] | Error>()
  private waiters: { name: string; resolve: () => void }[] = []
  readonly calls: string[] = []

  set(name: string, addresses: string[], ttl = 1): void {
    this.answers.set(name, addresses.map((address) => ({ address, ttl })))
  }

  fail(name: string, error = new Error(`queryA ENOTFOUND ${name}`)): void {
    this.answers.set(name, error)
  }

  /** Resolves on the next lookup of `name` (after it has been answered). */
  nextCall(name: string): Promise<void> {
    return new Promise((resolve) => this.waiters.push({ name, resolve }))
  }

  async resolve(name: string): Promise<ResolvedAddress[]> {
    this.calls.push(name)
    const answer = this.answers.get(name)
    const waiting = this.waiters.filter((w) => w.name === name)
    this.waiters = this.waiters.filter((w) => w.name !== name)
    queueMicrotask(() => waiting.forEach((w) => w.resolve()))
    if (answer === undefined) throw Object.assign(new Error(`queryA ENOTFOUND ${name}`), { code: 'ENOTFOUND' })
    if (answer instanceof Error) throw answer
    return answer
  }
}
