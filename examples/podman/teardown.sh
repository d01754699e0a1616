#!/usr/bin/env bash
# Remove what setup.sh created: the containers labelled relight.example=podman and the image.
set -euo pipefail
for id in $(podman ps -aq --filter label=relight.example=podman); do podman rm -f "$id" >/dev/null; done
podman rmi -f localhost/relight-example-busybox:latest >/dev/null 2>&1 || true
echo "removed the example containers and image"
