/** Owners whose files the sidecar trusts (state files, admin.token_file): itself and root. */
export function trustedOwner(uid: number): boolean {
  return uid === 0 || uid === process.getuid?.()
}
