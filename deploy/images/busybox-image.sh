#!/usr/bin/env bash
# A busybox image built locally from Debian's static busybox (busybox-static), for machines that
# cannot pull busybox:1.36 from a registry: the apps of examples/compose run in it. The image holds
# /bin/busybox and a link for each of its applets (sh, httpd, wget, …). Cached by the binary's
# hash and this recipe's (the image tag says both).
#
#   deploy/images/busybox-image.sh      # prints the image tag on its last line
#
# Needs /bin/busybox (apt-get install busybox-static) and docker.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${BUSYBOX:-/bin/busybox}
[ -x "$bin" ] || { echo "busybox-image: $bin is missing (apt-get install busybox-static)" >&2; exit 1; }
key=$( { cat "$here/busybox-image.sh"; sha256sum <"$bin"; } | sha256sum | cut -c1-12)
tag="relight-local/busybox:$key"
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/bin" "$work/root/tmp"
chmod 1777 "$work/root/tmp"
install -m 0755 "$bin" "$work/root/bin/busybox"
for applet in $("$bin" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$work/root/bin/$applet"
done
tar -C "$work/root" -cf "$work/root.tar" .
docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' "$work/root.tar" "$tag" >/dev/null
echo "$tag"
