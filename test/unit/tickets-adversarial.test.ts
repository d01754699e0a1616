import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MAX_OPEN_PER_BACKEND, MAX_OPEN_TICKETS, TicketLedger, type LogConnection, type TicketTarget } from '../../sidecar/core/tickets.js'

/** A backend as the ledger sees it: an in-flight count. */
function target(): TicketTarget & { inflight: number } {
  return {
    inflight: 0,
    counters: { wakes: 0 },
    finished() {
      this.inflight--
    },
  }
}

const DAY = 24 * 3600_000

describe('ticket ledger: adversarial cases', () => {
  it('a flood of tickets for one backend must not end another backend\'s open stream (ledger full)', () => {
    const ledger = new TicketLedger()
    const caddy: LogConnection = { open: true, proven: false }
    ledger.connectionOpened(caddy)
    const streamed = target() // backend A: one long SSE stream through Caddy
    streamed.inflight++
    ledger.issue(streamed, DAY)
    // A local user with access to `listen` sends /auth with X-Relight-Snippet: 2 for backend B.
    const flooded = Array.from({ length: Math.ceil(MAX_OPEN_TICKETS / MAX_OPEN_PER_BACKEND) + 1 }, target)
    for (let i = 0; i <= MAX_OPEN_TICKETS; i++) {
      const f = flooded[i % flooded.length]!
      f.inflight++
      ledger.issue(f, DAY)
    }
    assert.equal(streamed.inflight, 1, 'A\'s stream stopped counting: A goes to sleep mid-stream')
  })

  it('a connection that is not Caddy\'s must not become "proven" by replaying its own ticket and then put streams to sleep', () => {
    const ledger = new TicketLedger()
    const caddy: LogConnection = { open: true, proven: false }
    ledger.connectionOpened(caddy)
    const b = target()
    // The attacker makes one request through Caddy and reads its ticket from the response...
    b.inflight++
    const own = ledger.issue(b, DAY)!
    // ...and writes a line carrying it on a connection of its own, before Caddy's first line.
    const attacker: LogConnection = { open: true, proven: false }
    ledger.connectionOpened(attacker)
    ledger.finish(own, attacker)
    // Another client now opens a long stream through Caddy: its ticket is bound to the attacker only.
    b.inflight++
    ledger.issue(b, DAY)
    ledger.connectionClosed(attacker)
    assert.equal(b.inflight, 1, 'closing the attacker\'s connection ended another client\'s stream')
  })

  it('a proven foreign connection must not keep tickets counting after Caddy\'s connection closes', () => {
    const ledger = new TicketLedger()
    const caddy: LogConnection = { open: true, proven: false }
    ledger.connectionOpened(caddy)
    const b = target()
    b.inflight++
    ledger.finish(ledger.issue(b, DAY)!, caddy) // Caddy proves itself
    b.inflight++
    const own = ledger.issue(b, DAY)! // the attacker's own request through Caddy
    const attacker: LogConnection = { open: true, proven: false }
    ledger.connectionOpened(attacker)
    ledger.finish(own, attacker) // attacker's connection is now "proven" too
    b.inflight++
    ledger.issue(b, DAY) // a request whose line Caddy will never send: Caddy dies now
    ledger.connectionClosed(caddy)
    assert.equal(b.inflight, 0, 'an idle foreign connection kept a dead Caddy\'s ticket counting (pinned for max_request_duration)')
  })

  it('slots held by idle foreign connections while Caddy is out: README says counting stops; tickets must not pin backends', () => {
    // README "Accounting model": "filling them keeps Caddy's own connection out: in-flight counting
    // then stops, the fallback applies". A local user holds the other slots; Caddy restarts and is refused.
    const ledger = new TicketLedger()
    const caddy: LogConnection = { open: true, proven: false }
    ledger.connectionOpened(caddy)
    const b = target()
    b.inflight++
    ledger.finish(ledger.issue(b, DAY)!, caddy)
    for (let i = 0; i < 3; i++) ledger.connectionOpened({ open: true, proven: false })
    ledger.connectionClosed(caddy) // Caddy restarts; its redial is refused (4 slots taken)
    assert.equal(ledger.counting, false, 'requests are still given tickets that only the intruder could finish')
  })
})
