#!/usr/bin/env bash
# Build a tiny image from Debian's static busybox (no registry needed) and start two labelled
# containers on the host network, listening on loopback only. Undo with ./teardown.sh.
set -euo pipefail
command -v podman >/dev/null || { echo "install podman first: apt-get install podman runc busybox-static"; exit 1; }
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "install busybox-static first"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/bin" "$work/root/www"
cp "$busybox" "$work/root/bin/busybox"
echo '<h1>hello from a Podman container</h1>' > "$work/root/www/index.html"
tar -C "$work/root" -cf "$work/img.tar" .
podman import "$work/img.tar" localhost/relight-example-busybox:latest >/dev/null

run() { # name port domains sleep-mode
  podman rm -f "$1" >/dev/null 2>&1 || true
  podman run -d --name "$1" --network host --stop-signal SIGKILL \
    --label relight.domain="$3" --label relight.port="$2" --label relight.sleep="$4" \
    --label relight.example=podman \
    localhost/relight-example-busybox:latest /bin/busybox httpd -f -p "127.0.0.1:$2" -h /www >/dev/null
  echo "started $1: $3 → 127.0.0.1:$2 (sleep: $4)"
}
run relight-example-web 18181 web.localhost,www.web.localhost checkpoint
run relight-example-api 18182 api.localhost pause
