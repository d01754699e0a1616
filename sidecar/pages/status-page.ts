/**
 * The status page and its login form: plain HTML, one inline style and one inline script (both
 * allowed by a per-response CSP nonce), no framework, no build step, no network but this
 * sidecar. A summary line from GET /_relight/healthz; backends by provider from GET
 * /_relight/admin/backends (full hosts as links, idle countdown, restart back-off shown as such,
 * only the button the state allows); the last 50 events from /_relight/admin/events/recent; all
 * kept current from the events stream (GET /_relight/admin/events): each event about a backend
 * refetches that backend. Wake and sleep buttons POST with the session's CSRF token. Below
 * 760 px each backend is a card.
 */
import { LIFECYCLE_EVENT_TYPES } from '../core/events.js'
import { escapeHtml } from './html.js'

const STYLE = `
:root{--fg:#1d232a;--muted:#687280;--line:#e3e6ea;--ok:#1f8a4c;--warn:#b7791f;--bad:#c53030;--bg:#fff;--chip:#f2f4f7}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;color:var(--fg);background:var(--bg);margin:0}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1rem;padding:.8rem 1.2rem;border-bottom:1px solid var(--line)}
header h1{font-size:1.05rem;margin:0;flex:1}main{padding:.6rem 1.2rem 2rem;max-width:84rem}
#summary{flex-basis:100%;display:flex;flex-wrap:wrap;gap:.3rem .5rem;margin:.2rem 0 0;padding:0;list-style:none}
#summary li{background:var(--chip);border-radius:1rem;padding:.1rem .65rem;font-size:.85rem}
#summary li.bad{color:var(--bad);font-weight:600}#summary li.ok{color:var(--ok)}
h2{font-size:.95rem;margin:1.4rem 0 .4rem;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:.8rem}td.num{font-variant-numeric:tabular-nums}
.key{display:block;max-width:16rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-size:.8rem}
.state{display:inline-block;padding:.05rem .5rem;border-radius:1rem;background:var(--chip);font-weight:600;white-space:nowrap}
.state.running{color:var(--ok)}.state.waking,.state.probing,.state.sleeping{color:var(--warn)}.state.asleep{color:var(--muted)}.state.backoff{color:#fff;background:var(--bad)}
.err{color:var(--bad)}.muted{color:var(--muted)}.hosts{font-family:ui-monospace,monospace;font-size:.85rem;white-space:nowrap}
.hosts a{color:inherit}.small{font-size:.8rem}
button{font:inherit;padding:.2rem .7rem;border:1px solid var(--line);border-radius:.3rem;background:#fff;cursor:pointer}button:hover{background:var(--chip)}
#live{font-size:.85rem}#live.on{color:var(--ok)}#live.off{color:var(--bad)}#note{min-height:1.2em;margin:.3rem 0 -.6rem}
ol#events{list-style:none;margin:0;padding:0;font-size:.85rem}ol#events li{display:flex;gap:.6rem;padding:.25rem 0;border-bottom:1px solid var(--line)}
ol#events time{color:var(--muted);font-variant-numeric:tabular-nums;white-space:nowrap}ol#events .type{font-weight:600;white-space:nowrap}
ol#events .failed{color:var(--bad)}ol#events .detail{overflow-wrap:anywhere}
form.login{max-width:22rem;margin:18vh auto;padding:0 1rem}form.login input{width:100%;font:inherit;padding:.45rem;margin:.4rem 0 .8rem}
@media (max-width:760px){
 main{padding:.4rem .8rem 2rem}header{padding:.7rem .8rem}
 table,tbody,tr,td{display:block;width:100%}thead{display:none}
 tr{border:1px solid var(--line);border-radius:.4rem;margin:.6rem 0;padding:.3rem .2rem}
 td{border:0;padding:.2rem .5rem;display:flex;gap:.6rem}td::before{content:attr(data-label);color:var(--muted);font-size:.8rem;min-width:5.5rem;flex:none}
 td.name::before,td.actions::before{content:none}td.empty{display:none}.key{max-width:100%}
 .hosts{white-space:normal;overflow-wrap:anywhere}
}
`

function shell(nonce: string, title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><style nonce="${nonce}">${STYLE}</style></head>
<body>${body}</body></html>
`
}

/** The login form: POSTs the token in the body; works without JavaScript. */
export function loginPage(nonce: string, error?: string): string {
  return shell(
    nonce,
    'relight-sidecar: log in',
    `<form class="login" method="post" action="/_relight/status/login">
<h1>relight-sidecar</h1>
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
${error ? `<p class="err" role="alert">${escapeHtml(error)}</p>` : ''}<button type="submit">Log in</button>
</form>`,
  )
}

/** The page for a logged-in browser; `csrf` is sent back on wake, sleep and logout. */
export function statusPage(nonce: string, csrf: string): string {
  return shell(
    nonce,
    'relight-sidecar status',
    `<header><h1>relight-sidecar</h1><span id="live" class="off">connecting…</span><button id="logout" type="button">Log out</button>
<ul id="summary" aria-label="Summary"></ul></header>
<main><p id="note" role="status"></p><div id="providers"><p class="muted">Loading…</p></div>
<h2>Recent events</h2><ol id="events" reversed></ol></main>
<script nonce="${nonce}">
"use strict";
const CSRF = ${JSON.stringify(csrf)};
const TYPES = ${JSON.stringify(LIFECYCLE_EVENT_TYPES)};
const API = "/_relight/admin";
const MAX_EVENTS = 50;
const backends = new Map();
let events = [];
let fetchedAt = Date.now();
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  return e;
}
function span(s) { return s < 60 ? Math.round(s) + " s" : s < 3600 ? Math.round(s / 60) + " min" : s < 86400 * 2 ? Math.round(s / 3600) + " h" : Math.round(s / 86400) + " d"; }
function ago(iso) {
  if (!iso) return "–";
  return el("time", { datetime: iso, title: iso }, span(Math.max(0, (Date.now() - Date.parse(iso)) / 1000)) + " ago");
}
function ms(n) { return n === undefined ? "–" : n < 1000 ? n + " ms" : (n / 1000).toFixed(1) + " s"; }
function note(text, bad) { const n = $("note"); n.textContent = text; n.className = bad ? "err" : "muted"; }

async function api(path, init) {
  const res = await fetch(path.startsWith("/_relight/") ? path : API + path, { credentials: "same-origin", ...init });
  if (res.status === 401) { location.reload(); throw new Error("logged out"); }
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : {};
  if (!res.ok) throw Object.assign(new Error(body.detail || body.title || res.statusText), { body });
  return body;
}
async function op(key, what) {
  const b = backends.get(key);
  note((what === "wake" ? "Waking " : "Putting to sleep ") + (b ? b.name : key) + "…");
  try {
    const next = await api("/backends/" + encodeURIComponent(key) + "/" + what, { method: "POST", headers: { "x-relight-csrf": CSRF } });
    backends.set(next.key, next); render(); note(next.name + ": " + next.phase);
  } catch (err) { note((b ? b.name : key) + ": " + err.message, true); }
}
async function loadAll() {
  const { backends: list } = await api("/backends");
  fetchedAt = Date.now();
  backends.clear();
  for (const b of list) backends.set(b.key, b);
  render();
}
async function refresh(key) {
  try { backends.set(key, await api("/backends/" + encodeURIComponent(key))); }
  catch (err) { if (err.body && err.body.status === 404) backends.delete(key); }
  render();
}
async function loadSummary() {
  const h = await api("/_relight/healthz");
  const list = [...backends.values()];
  const awake = list.filter((b) => b.phase === "running").length;
  const providers = Object.entries(h.providers);
  const down = providers.filter(([, p]) => !p.ok).map(([id]) => id);
  const items = [
    [h.backends + " backend" + (h.backends === 1 ? "" : "s")],
    [awake + " awake", awake > 0 ? "ok" : ""],
    [providers.length === 0 ? "no providers" : down.length === 0 ? (providers.length === 1 ? "provider up" : "all " + providers.length + " providers up") : "down: " + down.join(", "), down.length ? "bad" : "ok"],
    ["access log " + h.access_log, h.access_log === "disconnected" ? "bad" : h.access_log === "connected" ? "ok" : ""],
    [h.snippet === null || h.snippet === undefined ? "no Caddy request yet" : "snippet v" + h.snippet, h.snippet_outdated ? "bad" : h.snippet ? "ok" : ""],
    ["v" + h.version],
    ["up " + span(h.uptime_s)],
  ];
  $("summary").replaceChildren(...items.map(([text, cls]) => el("li", { class: cls || "" }, text)));
}

/** A crash-looping app waits between restarts: show that, not "asleep". */
function backoff(b) { return b.phase !== "running" ? b.restart_backoff : undefined; }
function stateCell(b) {
  const off = backoff(b);
  if (off) return [el("div", {}, el("span", { class: "state backoff", "data-phase": b.phase, "data-backoff": "" }, "restart back-off"), el("div", { class: "muted small" }, off.reason + " (since " + new Date(off.since).toLocaleTimeString() + ")"))];
  const asleepBySchedule = b.schedule && b.schedule.state === "asleep" ? el("div", { class: "small", "data-schedule": "asleep" }, "asleep by schedule" + (b.schedule.until_text ? " until " + b.schedule.until_text : "") + " (asleep_during)") : null;
  const laneOff = b.fast_lane_off ? el("div", { class: "muted small", "data-lane-off": "" }, "fast lane off: " + b.fast_lane_off) : null;
  return [el("span", { class: "state " + b.phase, "data-phase": b.phase }, b.phase), b.state !== b.phase ? el("div", { class: "muted small" }, b.state) : null, asleepBySchedule, laneOff];
}
/** When an awake backend will be put to sleep (updated every second without a refetch). */
function idleCell(b) {
  if (b.phase !== "running") return "–";
  if (b.always_on) return el("span", { class: "muted" }, "always on");
  if (b.inflight > 0) return el("span", {}, "awake: " + b.inflight + " in flight");
  // awake_during holds it awake whatever its idle clock says
  if (b.schedule && b.schedule.state === "awake") return el("span", { "data-schedule": "awake" }, (b.schedule.until_text ? "awake until " + b.schedule.until_text : "awake") + " (awake_during)");
  // An idle policy (startup_grace, busy_cpu) holds it awake past its idle_timeout.
  if (b.held && b.held_ms > b.idle_timeout_ms - b.idle_ms) return el("span", { "data-held": b.held }, (b.held === "busy" ? "busy" : "startup grace") + ": awake " + span(b.held_ms / 1000) + " more");
  return el("span", { "data-deadline": String(fetchedAt + b.idle_timeout_ms - b.idle_ms) }, countdown(fetchedAt + b.idle_timeout_ms - b.idle_ms));
}
function countdown(deadline) { const s = (deadline - Date.now()) / 1000; return s <= 1 ? "asleep any moment" : "asleep in " + span(s); }
function actions(b) {
  if (backoff(b)) return el("span", { class: "muted small" }, "restarts by itself");
  if (b.phase === "asleep" && b.schedule && b.schedule.state === "asleep") return el("span", { class: "muted small" }, "wakes are refused until then");
  if (b.phase === "asleep") return el("button", { type: "button", "data-op": "wake", onclick: () => op(b.key, "wake") }, "Wake");
  if (b.phase === "running" && !b.always_on) return el("button", { type: "button", "data-op": "sleep", onclick: () => op(b.key, "sleep") }, "Sleep");
  return null;
}
function hosts(b) {
  const names = b.full_hosts && b.full_hosts.length ? b.full_hosts : b.hosts;
  if (names.length === 0) return el("span", { class: "muted" }, "no hosts");
  return names.flatMap((h, i) => {
    const item = h.startsWith("*.") ? h : el("a", { href: "https://" + h + "/", rel: "noreferrer", target: "_blank" }, h);
    return i ? [el("br"), item] : [item];
  });
}
/** A reason cut to one short line; the whole of it in the tooltip. */
function clip(text, n) { return el("span", { title: text }, text.length > n ? text.slice(0, n - 1) + "…" : text); }
/**
 * Two lines at most: the last sleep (when, and why when not idle_timeout) and the last refusal,
 * of a sleep (busy, startup_grace, awake_during, in flight…) or of a wake (max_awake,
 * asleep_during), whichever came later, with its time.
 */
function sleepCell(b) {
  const cause = b.last_sleep_cause;
  const sleep = b.last_sleep_at ? el("div", { "data-cause": cause ? cause.cause : "idle" }, ago(b.last_sleep_at), el("span", { class: "muted small" }, " · " + (cause ? cause.cause : "idle")), cause && cause.reason ? el("div", { class: "muted small" }, clip(cause.reason, 60)) : null) : el("div", {}, "–");
  const s = b.last_sleep_refused, w = b.last_wake_refused;
  const wake = w && (!s || !w.at || Date.parse(w.at) >= Date.parse(s.at));
  const refusal = wake ? w : s;
  if (!refusal) return [sleep];
  const reason = wake ? refusal.reason : refusal.reason + (refusal.cpu_pct !== undefined ? " (CPU " + refusal.cpu_pct + "%)" : "");
  const attrs = wake ? { class: "muted small", "data-refused": "wake", "data-wake-refused": refusal.code } : { class: "muted small", "data-refused": "sleep" };
  return [sleep, el("div", attrs, wake ? "wake refused " : "sleep refused ", ago(refusal.at), ": ", clip(reason, 60))];
}
function row(b) {
  const err = b.last_error;
  const td = (label, attrs, ...c) => el("td", { "data-label": label, ...attrs }, ...c);
  const id = b.key.slice(b.key.indexOf(":") + 1);
  return el("tr", { "data-key": b.key },
    td("", { class: "name" }, el("div", {}, el("strong", {}, b.name), el("span", { class: "key muted", title: b.key }, b.provider + ":" + (id.length > 24 ? id.slice(0, 12) + "…" : id)))),
    td("State", {}, ...stateCell(b)),
    td("Hosts", { class: "hosts" }, el("div", {}, ...[hosts(b)].flat())),
    td("In flight", { class: "num" }, b.inflight),
    td("Idle", { "data-idle": "" }, idleCell(b)),
    td("Last wake", {}, ago(b.last_wake_at), b.last_wake_duration_ms !== undefined ? el("div", { class: "muted small" }, "took " + ms(b.last_wake_duration_ms)) : null),
    td("Last sleep", { "data-last-sleep": "" }, el("div", {}, ...sleepCell(b))),
    td("Last error", { class: err ? "err" : "muted empty" }, err ? err.code.replace("RELIGHT_ERR_", "") + (err.reason ? ": " + err.reason : "") : "–"),
    td("", { class: "actions" }, actions(b)));
}
function render() {
  const byProvider = new Map();
  for (const b of [...backends.values()].sort((x, y) => x.name.localeCompare(y.name) || x.key.localeCompare(y.key))) {
    if (!byProvider.has(b.provider)) byProvider.set(b.provider, []);
    byProvider.get(b.provider).push(b);
  }
  const root = $("providers");
  root.replaceChildren();
  if (byProvider.size === 0) root.append(el("p", { class: "muted" }, "No backends."));
  for (const [provider, list] of byProvider) {
    const awake = list.filter((b) => b.phase === "running").length;
    root.append(el("h2", {}, provider + " (" + list.length + ", " + awake + " awake)"),
      el("table", {}, el("thead", {}, el("tr", {}, ...["Backend", "State", "Hosts", "In flight", "Idle", "Last wake", "Last sleep", "Last error", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...list.map(row))));
  }
}

function describe(e) {
  const parts = [];
  if (e.from) parts.push("from " + e.from);
  if (e.state) parts.push(e.state);
  if (e.mode) parts.push(e.mode + (e.fallback ? " (fallback)" : ""));
  if (e.duration_ms !== undefined) parts.push(ms(e.duration_ms));
  if (e.cause && e.cause !== "idle") parts.push(e.cause);
  if (e.reason) parts.push(e.reason);
  if (e.backends !== undefined) parts.push(e.backends + " backends");
  return parts.join(" · ");
}
function renderEvents() {
  $("events").replaceChildren(...events.slice().reverse().map((e) =>
    el("li", { "data-type": e.type },
      el("time", { datetime: e.time, title: e.time }, new Date(e.time).toLocaleTimeString()),
      el("span", { class: "type" + (e.type.endsWith(".failed") || e.type === "provider.down" ? " failed" : "") }, e.type),
      el("strong", {}, e.name || e.provider || ""),
      el("span", { class: "detail muted" }, describe(e)))));
  if (events.length === 0) $("events").append(el("li", { class: "muted" }, "No events yet."));
}
function addEvent(e) {
  if (events.length && events[events.length - 1].id >= e.id) return;
  events.push(e);
  if (events.length > MAX_EVENTS) events = events.slice(-MAX_EVENTS);
  renderEvents();
}
async function loadEvents() {
  events = (await api("/events/recent?limit=" + MAX_EVENTS)).events;
  renderEvents();
}

function connect() {
  const live = $("live");
  const source = new EventSource(API + "/events");
  source.onopen = () => { live.textContent = "live"; live.className = "on"; };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "off"; };
  source.addEventListener("reset", () => { loadAll().catch(() => undefined); loadEvents().catch(() => undefined); });
  for (const type of TYPES) {
    source.addEventListener(type, (m) => {
      const e = JSON.parse(m.data);
      addEvent(e);
      if (e.key) {
        const b = backends.get(e.key);
        // Show the transition at once; the refetch brings the details.
        if (b && type === "wake.started") { b.phase = "waking"; render(); }
        refresh(e.key).then(() => loadSummary()).catch(() => undefined);
        // The request that caused a wake finishes a moment later (access log): look again.
        if (type === "wake.ready") setTimeout(() => refresh(e.key), 1500);
      } else { loadAll().catch(() => undefined); loadSummary().catch(() => undefined); }
    });
  }
}
$("logout").addEventListener("click", async () => {
  await fetch("/_relight/status/logout", { method: "POST", credentials: "same-origin", headers: { "x-relight-csrf": CSRF } });
  location.reload();
});
// In-flight counts and idle clocks change without events (the request path emits none): refresh now and then.
setInterval(() => { loadAll().then(loadSummary).catch(() => undefined); }, 15000);
setInterval(() => { for (const e of document.querySelectorAll("[data-deadline]")) e.textContent = countdown(Number(e.dataset.deadline)); }, 1000);
loadAll().then(() => Promise.all([loadSummary(), loadEvents()])).then(connect, (err) => note(err.message, true));
</script>`,
  )
}
