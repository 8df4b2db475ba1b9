#!/usr/bin/env bash
# Builds the stub agent image (no registry needed): a busybox-static rootfs with the stub `claude` CLI and a
# `claude` user (uid 1000), imported with `docker import`.
# Usage: deploy/agent-stub/build-image.sh [image tag]   (default forge-hooks/agent-stub:latest)
set -euo pipefail
tag="${1:-forge-hooks/agent-stub:latest}"
here="$(cd "$(dirname "$0")" && pwd)"
busybox=/bin/busybox
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" || [ ! -x "$busybox" ]; then
  echo "error: busybox-static is not installed (apt-get install -y busybox-static): the image needs a static busybox" >&2
  exit 1
fi
# The image records what it was built from; with FORGE_HOOKS_STUB_REUSE=1 an image built from the same files is kept
# (parallel test processes then share one image instead of re-tagging it under each other's running containers).
# shellcheck source=rootfs.sh
. "$here/rootfs.sh"
source_hash="$(cat "$here/claude" "$0" "$here/rootfs.sh" "$busybox" | sha256sum | cut -c1-16)"
kept_if_built_from "$tag" forge-hooks.stub-source "$source_hash"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
base_rootfs "$root" /bin/sh
install -m 0755 "$here/claude" "$root/usr/local/bin/claude"
tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  -c 'ENV HOME=/home/claude' \
  -c 'USER 1000:1000' \
  -c 'WORKDIR /home/claude' \
  -c 'CMD ["sleep", "infinity"]' \
  -c "LABEL forge-hooks.stub-source=$source_hash" \
  - "$tag" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Id}}' "$tag"))"
