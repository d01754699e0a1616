/** JSON Schemas of the admin answers: they validate nothing on the way out, they document (OpenAPI). */

export const problemSchema = {
  description: 'RFC 9457 problem details',
  type: 'object',
  properties: {
    type: { type: 'string', description: '`urn:relight:error:<code>`' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    code: { type: 'string', description: 'Stable RELIGHT_ERR_* code (README, "Error codes")' },
    backend: { type: 'string' },
    host: { type: 'string' },
    reason: { type: 'string', description: 'Why a sleep was refused, e.g. `inflight: 1`' },
  },
  required: ['type', 'title', 'status', 'code'],
} as const

const stamp = { type: 'string', format: 'date-time' } as const

export const backendSchema = {
  type: 'object',
  properties: {
    key: { type: 'string', description: '`<provider>:<backend id>`' },
    name: { type: 'string' },
    provider: { type: 'string', description: 'Provider id' },
    hosts: { type: 'array', items: { type: 'string' }, description: 'As declared (a one-label name applies under each base domain)' },
    full_hosts: { type: 'array', items: { type: 'string' }, description: 'One-label hosts expanded under base_domains; wildcards as declared' },
    idle_timeout_ms: { type: 'number' },
    always_on: { type: 'boolean' },
    phase: { type: 'string', enum: ['running', 'sleeping', 'asleep', 'waking', 'probing'] },
    state: { type: 'string', description: 'What the provider reports: running, paused, stopped, checkpointed, suspended, scaled_to_zero, starting, unknown' },
    upstreams: { type: 'array', items: { type: 'string' } },
    inflight: { type: 'integer', description: 'Requests authorised and not yet finished' },
    idle_ms: { type: 'number' },
    wakes: { type: 'integer' },
    wakeFailures: { type: 'integer' },
    sleeps: { type: 'integer' },
    sleepFailures: { type: 'integer' },
    fallbackSleeps: { type: 'integer' },
    last_wake_at: stamp,
    last_wake_duration_ms: { type: 'number' },
    last_sleep_at: stamp,
    last_sleep_mode: { type: 'string' },
    last_error: {
      type: 'object',
      properties: { at: stamp, op: { type: 'string', enum: ['wake', 'sleep'] }, code: { type: 'string' }, reason: { type: 'string' } },
      required: ['code'],
    },
    last_sleep_refused: {
      type: 'object',
      description: 'The last refused sleep: the rule that kept it awake (README "When does a backend sleep?"); cpu_pct for busy',
      properties: { at: stamp, reason: { type: 'string' }, cpu_pct: { type: 'number' } },
      required: ['reason'],
    },
    held: { type: 'string', enum: ['startup_grace', 'busy'], description: 'An idle policy holds it awake for held_ms more' },
    held_ms: { type: 'number' },
    fast_lane: { type: 'boolean', description: "The fast lane's flag is written: Caddy proxies it directly" },
    fast_lane_off: { type: 'string', description: 'fast_lane is on and the backend awake, but it stays in the forward_auth lane: why (ignore rules, replicas, wildcard hosts, no fast_lane_dir)' },
    schedule: {
      type: 'object',
      description: 'Inside an awake_during or asleep_during window now: which (key), and until when (until, and as the schedule\'s zone shows it, until_text); no until for a window that never ends',
      properties: { state: { type: 'string', enum: ['awake', 'asleep'] }, key: { type: 'string' }, until: stamp, until_text: { type: 'string' } },
      required: ['state', 'key'],
    },
    last_sleep_cause: { type: 'object', properties: { cause: { type: 'string' }, reason: { type: 'string' } }, required: ['cause'] },
    last_wake_refused: { type: 'object', properties: { at: stamp, code: { type: 'string' }, reason: { type: 'string' } }, required: ['code', 'reason'] },
    restart_backoff: {
      type: 'object',
      description: 'The app keeps exiting and its restarts back off; cleared by a successful wake',
      properties: { since: stamp, reason: { type: 'string' } },
      required: ['since', 'reason'],
    },
  },
  required: ['key', 'name', 'provider', 'hosts', 'phase', 'state', 'inflight'],
} as const
