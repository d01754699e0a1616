#!/usr/bin/env bash
# A Caddy image built locally from Debian's caddy package (2.6.2 on bookworm), for machines that
# cannot pull caddy:2.6.2 from a registry (CI here). The binary is Go, linked only against libc
# and libzstd: the image holds it, those libraries (found with ldd), CA certificates, a passwd
# file and the directories of the official image (/config, /data, /etc/caddy, /srv). It runs as
# the official image does: `caddy run --config /etc/caddy/Caddyfile --adapter caddyfile`, as
# root unless the container says otherwise, with XDG_DATA_HOME=/data (certificates) and
# XDG_CONFIG_HOME=/config. Cached by the .deb's hash and this recipe's (the image tag says both).
#
#   deploy/images/caddy-image.sh        # prints the image tag on its last line
#
# Needs apt (Debian's lists), dpkg-deb, ldd and docker.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${RELIGHT_IMAGE_CACHE:-/var/cache/relight-images}
mkdir -p "$cache"
exec 9>"$cache/.caddy-image.lock"
flock 9

work=$(mktemp -d "$cache/caddy.XXXXXX")
trap 'rm -rf "$work"' EXIT
deb=$(ls /var/cache/apt/archives/caddy_*_amd64.deb 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$deb" ]; then
  (cd "$work" && apt-get download -qq caddy 2>/dev/null) || { echo "caddy-image: apt-get download caddy failed (apt-get update first?)" >&2; exit 1; }
  deb=$(ls "$work"/caddy_*.deb)
fi
version=$(dpkg-deb -f "$deb" Version)
key=$( { cat "$here/caddy-image.sh"; sha256sum <"$deb"; } | sha256sum | cut -c1-12)
tag="relight-local/caddy:${version%%-*}-$key"
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi

root="$work/root"
dpkg-deb -x "$deb" "$work/pkg"
mkdir -p "$root/usr/bin" "$root/etc/caddy" "$root/etc/ssl/certs" "$root/config" "$root/data" "$root/srv" "$root/tmp"
chmod 1777 "$root/tmp"
install -m 0755 "$work/pkg/usr/bin/caddy" "$root/usr/bin/caddy"
# The dynamic loader and the libraries the binary needs, at the paths ldd names.
for lib in $(ldd "$root/usr/bin/caddy" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\ncaddy:x:1000:1000:caddy:/data:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\ncaddy:x:1000:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
cat >"$root/etc/caddy/Caddyfile" <<'CADDYFILE'
:80
respond "Caddy works; mount your Caddyfile at /etc/caddy/Caddyfile"
CADDYFILE
"$root/usr/bin/caddy" version >/dev/null
tar -C "$root" --numeric-owner -cf "$work/rootfs.tar" .
docker import \
  --change 'ENV XDG_CONFIG_HOME=/config' \
  --change 'ENV XDG_DATA_HOME=/data' \
  --change 'WORKDIR /srv' \
  --change 'EXPOSE 80 443 443/udp 2019' \
  --change "LABEL org.opencontainers.image.title=caddy org.opencontainers.image.version=$version org.opencontainers.image.source=https://packages.debian.org/bookworm/caddy" \
  --change 'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]' \
  --message "Debian caddy $version (relight local build)" \
  "$work/rootfs.tar" "$tag" >/dev/null
echo "$tag"
