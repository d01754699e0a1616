export function renderTable(results: Record<string, unknown>): string {
  return JSON.stringify(results.hot, null, 1) + '\n'
}
