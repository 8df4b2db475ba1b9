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
source_hash="$(cat "$here/claude" "$0" "$busybox" | sha256sum | cut -c1-16)"
if [ "${FORGE_HOOKS_STUB_REUSE:-0}" = 1 ] \
  && [ "$(docker image inspect -f '{{index .Config.Labels "forge-hooks.stub-source"}}' "$tag" 2>/dev/null)" = "$source_hash" ]; then
  echo "kept $tag ($(docker image inspect -f '{{.Id}}' "$tag")): built from the same files"
  exit 0
fi
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,usr/bin,usr/local/bin,etc,tmp,home/claude,proc,sys,dev,work}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$here/claude" "$root/usr/local/bin/claude"
cat > "$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/bin/sh
claude:x:1000:1000:claude:/home/claude:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<GROUP
root:x:0:
claude:x:1000:
nogroup:x:65534:
GROUP
chown -R 1000:1000 "$root/home/claude"
tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  -c 'ENV HOME=/home/claude' \
  -c 'USER 1000:1000' \
  -c 'WORKDIR /home/claude' \
  -c 'CMD ["sleep", "infinity"]' \
  -c "LABEL forge-hooks.stub-source=$source_hash" \
  - "$tag" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Id}}' "$tag"))"
