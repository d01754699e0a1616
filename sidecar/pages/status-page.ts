/**
 * The status page and its login form: plain HTML, one inline style and one inline script (both
 * allowed by a per-response CSP nonce), no framework, no build step, no network but this
 * sidecar. The script lists backends by provider from GET /_relight/admin/backends and keeps
 * them current from the events stream (GET /_relight/admin/events): each event about a backend
 * refetches that backend. Wake and sleep buttons POST with the session's CSRF token.
 */
import { LIFECYCLE_EVENT_TYPES } from '../core/events.js'
import { escapeHtml } from './html.js'

const STYLE = `
:root{--fg:#1d232a;--muted:#687280;--line:#e3e6ea;--ok:#1f8a4c;--warn:#b7791f;--bad:#c53030;--bg:#fff;--chip:#f2f4f7}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;color:var(--fg);background:var(--bg);margin:0}
header{display:flex;align-items:center;gap:1rem;padding:.8rem 1.2rem;border-bottom:1px solid var(--line)}
header h1{font-size:1.05rem;margin:0;flex:1}main{padding:1rem 1.2rem;max-width:80rem}
h2{font-size:.95rem;margin:1.4rem 0 .4rem;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:.8rem}td.num{font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:.05rem .5rem;border-radius:1rem;background:var(--chip);font-weight:600}
.state.running{color:var(--ok)}.state.waking,.state.probing,.state.sleeping{color:var(--warn)}.state.asleep{color:var(--muted)}
.err{color:var(--bad)}.muted{color:var(--muted)}.hosts{font-family:ui-monospace,monospace;font-size:.85rem}
button{font:inherit;padding:.2rem .7rem;border:1px solid var(--line);border-radius:.3rem;background:#fff;cursor:pointer}button:hover{background:var(--chip)}
#live{font-size:.85rem}#live.on{color:var(--ok)}#live.off{color:var(--bad)}#note{min-height:1.4em;margin:.2rem 0}
form.login{max-width:22rem;margin:18vh auto;padding:0 1rem}form.login input{width:100%;font:inherit;padding:.45rem;margin:.4rem 0 .8rem}
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
    `<header><h1>relight-sidecar</h1><span id="live" class="off">connecting…</span><button id="logout" type="button">Log out</button></header>
<main><p id="note" role="status"></p><div id="providers"><p class="muted">Loading…</p></div></main>
<script nonce="${nonce}">
"use strict";
const CSRF = ${JSON.stringify(csrf)};
const TYPES = ${JSON.stringify(LIFECYCLE_EVENT_TYPES)};
const API = "/_relight/admin";
const backends = new Map();
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  return e;
}
function ago(iso) {
  if (!iso) return "–";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const text = s < 60 ? s + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
  return el("time", { datetime: iso, title: iso }, text);
}
function ms(n) { return n === undefined ? "–" : n < 1000 ? n + " ms" : (n / 1000).toFixed(1) + " s"; }
function note(text, bad) { const n = $("note"); n.textContent = text; n.className = bad ? "err" : "muted"; }

async function api(path, init) {
  const res = await fetch(API + path, { credentials: "same-origin", ...init });
  if (res.status === 401) { location.reload(); throw new Error("logged out"); }
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : {};
  if (!res.ok) throw Object.assign(new Error(body.detail || body.title || res.statusText), { body });
  return body;
}
async function op(key, what) {
  note((what === "wake" ? "Waking " : "Putting to sleep ") + key + "…");
  try {
    const b = await api("/backends/" + encodeURIComponent(key) + "/" + what, { method: "POST", headers: { "x-relight-csrf": CSRF } });
    backends.set(b.key, b); render(); note(key + ": " + b.phase);
  } catch (err) { note(key + ": " + err.message, true); }
}
async function loadAll() {
  const { backends: list } = await api("/backends");
  backends.clear();
  for (const b of list) backends.set(b.key, b);
  render();
}
async function refresh(key) {
  try { backends.set(key, await api("/backends/" + encodeURIComponent(key))); }
  catch (err) { if (err.body && err.body.status === 404) backends.delete(key); }
  render();
}

function row(b) {
  const err = b.last_error;
  return el("tr", { "data-key": b.key },
    el("td", {}, el("strong", {}, b.name), el("div", { class: "muted" }, b.key)),
    el("td", {}, el("span", { class: "state " + b.phase, "data-phase": b.phase }, b.phase), b.state !== b.phase ? el("div", { class: "muted" }, b.state) : null),
    el("td", { class: "hosts" }, ...b.hosts.flatMap((h, i) => (i ? [el("br"), h] : [h]))),
    el("td", { class: "num" }, b.inflight),
    el("td", {}, ago(b.last_wake_at)),
    el("td", { class: "num" }, ms(b.last_wake_duration_ms)),
    el("td", {}, ago(b.last_sleep_at), b.last_sleep_refused ? el("div", { class: "muted" }, "refused: " + b.last_sleep_refused.reason) : null),
    el("td", { class: err ? "err" : "muted" }, err ? err.code.replace("RELIGHT_ERR_", "") + (err.reason ? ": " + err.reason : "") : "–"),
    el("td", {},
      el("button", { type: "button", onclick: () => op(b.key, "wake") }, "Wake"), " ",
      el("button", { type: "button", onclick: () => op(b.key, "sleep") }, "Sleep")));
}
function render() {
  const byProvider = new Map();
  for (const b of [...backends.values()].sort((x, y) => x.key.localeCompare(y.key))) {
    if (!byProvider.has(b.provider)) byProvider.set(b.provider, []);
    byProvider.get(b.provider).push(b);
  }
  const root = $("providers");
  root.replaceChildren();
  if (byProvider.size === 0) root.append(el("p", { class: "muted" }, "No backends."));
  for (const [provider, list] of byProvider) {
    root.append(el("h2", {}, provider + " (" + list.length + ")"),
      el("table", {}, el("thead", {}, el("tr", {}, ...["Backend", "State", "Hosts", "In flight", "Last wake", "Wake took", "Last sleep", "Last error", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...list.map(row))));
  }
}

function connect() {
  const live = $("live");
  const source = new EventSource(API + "/events");
  source.onopen = () => { live.textContent = "live"; live.className = "on"; };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "off"; };
  source.addEventListener("reset", () => loadAll().catch(() => undefined));
  for (const type of TYPES) {
    source.addEventListener(type, (m) => {
      const e = JSON.parse(m.data);
      if (e.key) {
        const b = backends.get(e.key);
        // Show the transition at once; the refetch brings the details.
        if (b && type === "wake.started") { b.phase = "waking"; render(); }
        refresh(e.key);
        // The request that caused a wake finishes a moment later (access log): look again.
        if (type === "wake.ready") setTimeout(() => refresh(e.key), 1500);
      } else loadAll().catch(() => undefined);
    });
  }
}
$("logout").addEventListener("click", async () => {
  await fetch("/_relight/status/logout", { method: "POST", credentials: "same-origin", headers: { "x-relight-csrf": CSRF } });
  location.reload();
});
// In-flight counts change without events (the request path emits none): refresh now and then.
setInterval(() => loadAll().catch(() => undefined), 15000);
loadAll().then(connect, (err) => note(err.message, true));
</script>`,
  )
}
