const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] as string)
}

function page(title: string, body: string, refreshSeconds?: number): string {
  const refresh = refreshSeconds === undefined ? '' : `<meta http-equiv="refresh" content="${refreshSeconds}">`
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">${refresh}
<title>${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:18vh auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}.muted{color:#777;font-size:.9rem}.dot{display:inline-block;width:.6rem;height:.6rem;border-radius:50%;background:#3a7;margin-right:.5rem;animation:p 1s infinite alternate}
@keyframes p{from{opacity:.2}to{opacity:1}}</style></head>
<body>${body}</body></html>
`
}

/** Shown to a browser while its backend wakes; it reloads itself until the app answers. */
export function waitingPage(host: string, retryAfterSeconds: number): string {
  return page(
    `Starting ${host}…`,
    `<h1><span class="dot"></span>Starting ${escapeHtml(host)}</h1>
<p>This app was asleep to save resources. It is waking up; this page reloads by itself.</p>
<p class="muted">If it does not load within a minute, try again later.</p>`,
    retryAfterSeconds,
  )
}

/**
 * Shown to a browser whose app cannot wake yet because `max_awake` apps are awake and busy
 * (RELIGHT_ERR_CAPACITY): it is queued, and the page retries by itself.
 */
export function queuedPage(host: string, retryAfterSeconds: number): string {
  return page(
    `Queued: ${host}`,
    `<h1><span class="dot"></span>${escapeHtml(host)} is queued</h1>
<p>This app is asleep, and the most apps allowed awake at once are busy right now. It starts as soon as one of them goes idle; this page retries every ${retryAfterSeconds} s by itself.</p>`,
    retryAfterSeconds,
  )
}

/** An error for a browser; API clients get application/problem+json instead. */
export function errorPage(status: number, title: string, detail: string, retryAfterSeconds?: number, host?: string): string {
  return page(
    `${status} ${title}`,
    `<h1>${status} ${escapeHtml(title)}</h1>${host === undefined ? '' : `<p class="muted">${escapeHtml(host)}</p>`}<p>${escapeHtml(detail)}</p>`,
    retryAfterSeconds,
  )
}
