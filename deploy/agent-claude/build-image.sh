#!/usr/bin/env bash
# Builds an agent image with the REAL Claude Code CLI, without a registry: the CLI binary bundled in the
# claude-agent-sdk wheel from PyPI (pinned below), glibc and bash copied from this Debian host, busybox-static for the
# usual tools, a `claude` user (uid 1000), imported with `docker import`. The real-CLI tests use it, with a fake
# Messages API (fake-messages-api.py) on the container's loopback.
#
# Usage: deploy/agent-claude/build-image.sh [image tag]     (default forge-hooks/agent-claude:<CLI version>)
# Env:   CLAUDE_AGENT_SDK_VERSION  the wheel to take the CLI from (default below; see docs/worker.md, "Tested CLI versions")
#        CLAUDE_CLI                use this CLI binary instead of downloading the wheel
#        FORGE_HOOKS_CACHE         where the extracted CLI is kept between builds (default /var/cache/forge-hooks)
#        FORGE_HOOKS_STUB_REUSE=1  keep an image already built from the same files
set -euo pipefail
sdk_version="${CLAUDE_AGENT_SDK_VERSION:-0.2.190}"
cache="${FORGE_HOOKS_CACHE:-/var/cache/forge-hooks}"
here="$(cd "$(dirname "$0")" && pwd)"
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "error: busybox-static is not installed (apt-get install -y busybox-static)" >&2; exit 1; }

cli="${CLAUDE_CLI:-}"
if [ -z "$cli" ]; then
  cli="$cache/claude-agent-sdk-$sdk_version/claude"
  if [ ! -x "$cli" ]; then
    python3 -m pip --version >/dev/null 2>&1 \
      || { echo "error: pip is needed to fetch claude-agent-sdk==$sdk_version (apt-get install -y python3-pip)" >&2; exit 1; }
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    echo "fetching claude-agent-sdk==$sdk_version from PyPI (about 190 MB, once; kept in $cache)…" >&2
    python3 -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 -d "$tmp" \
      "claude-agent-sdk==$sdk_version" \
      || { echo "error: could not download claude-agent-sdk==$sdk_version from PyPI (offline? set CLAUDE_CLI=/path/to/claude)" >&2; exit 1; }
    python3 - "$tmp" "$tmp/claude" <<'PY' || exit 1
import glob, sys, zipfile
wheels = glob.glob(sys.argv[1] + "/claude_agent_sdk-*.whl")
if not wheels:
    sys.exit("error: pip downloaded no claude_agent_sdk wheel for this platform")
with zipfile.ZipFile(wheels[0]) as z:
    if "claude_agent_sdk/_bundled/claude" not in z.namelist():
        sys.exit("error: %s bundles no CLI (claude_agent_sdk/_bundled/claude); pick another CLAUDE_AGENT_SDK_VERSION" % wheels[0])
    with open(sys.argv[2], "wb") as out:
        out.write(z.read("claude_agent_sdk/_bundled/claude"))
PY
    mkdir -p "$(dirname "$cli")"
    install -m 0755 "$tmp/claude" "$cli.partial" && mv "$cli.partial" "$cli"
  fi
fi
version="$("$cli" --version 2>/dev/null | awk '{print $1}' || true)"
[ -n "$version" ] || { echo "error: '$cli --version' failed or printed nothing: not a Claude Code CLI binary for this machine?" >&2; exit 1; }
tag="${1:-forge-hooks/agent-claude:$version}"

# shellcheck source=../agent-stub/rootfs.sh
. "$here/../agent-stub/rootfs.sh"
source_hash="$( (sha256sum "$cli" | cut -c1-64; cat "$0" "$here/../agent-stub/rootfs.sh" "$busybox" /bin/bash) | sha256sum | cut -c1-16)"
kept_if_built_from "$tag" forge-hooks.agent-source "$source_hash"
root="$(mktemp -d)"
trap 'rm -rf "$root" ${tmp:+"$tmp"}' EXIT
base_rootfs "$root" /bin/bash
mkdir -p "$root"/{lib64,lib/x86_64-linux-gnu}
rm -f "$root/bin/bash" "$root/bin/sh"
cp /bin/bash "$root/bin/bash"
ln -s bash "$root/bin/sh"
# glibc and every library the CLI and bash load, from this host (Debian 12: glibc 2.36)
for lib in $( (ldd "$cli"; ldd /bin/bash) | awk '/=>/ {print $3} /^\t\/lib64/ {print $1}' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
install -m 0755 "$cli" "$root/usr/local/bin/claude"
previous="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  -c 'ENV HOME=/home/claude' \
  -c 'ENV SHELL=/bin/bash' \
  -c 'USER 1000:1000' \
  -c 'WORKDIR /home/claude' \
  -c 'CMD ["sleep", "infinity"]' \
  -c "LABEL forge-hooks.agent-source=$source_hash forge-hooks.claude-version=$version" \
  - "$tag" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Id}}' "$tag")): Claude Code $version"
# The image this tag named before, if no container uses it (one is 430 MB).
[ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$tag")" ] && docker rmi "$previous" >/dev/null 2>&1 || true
