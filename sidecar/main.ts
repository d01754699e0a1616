#!/usr/bin/env node
/**
 * The `relight-sidecar` bin: tiny on purpose. ESM links every static import before any module
 * body runs, so a handler installed by the CLI itself came only after the whole program had
 * loaded (seconds on a busy machine), and a SIGHUP or SIGTERM in that window killed serve (exit
 * 129/143). Here only early-signals.ts (no imports) loads first and catches SIGHUP, SIGTERM and
 * SIGINT for serve; the rest is imported afterwards. What remains uncovered is Node's own start,
 * before any JavaScript runs (tens of ms; no Node program can catch a signal there).
 */
import './startup/early-signals.js'

await import('./cli.js')
