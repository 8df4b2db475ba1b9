#!/usr/bin/env bash
# Installs the Debian packages the project needs (as root), skipping those already present.
# Usage: scripts/install-deps.sh [extra packages…]
set -euo pipefail
packages=(redis-server libhiredis-dev pkg-config nginx openssl curl docker.io busybox-static python3 python3-pip gcc libc6-dev "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
