#!/usr/bin/env bash
# Starts dockerd in the background if no Docker engine answers on /var/run/docker.sock (as root), and waits for it.
set -euo pipefail
sock="${DOCKER_HOST:-unix:///var/run/docker.sock}"; sock="${sock#unix://}"
answers() { curl -sf --max-time 2 --unix-socket "$sock" http://docker/_ping >/dev/null 2>&1; }
answers && exit 0
if [ "$(id -u)" -ne 0 ]; then echo "error: no Docker engine at $sock and not root to start one" >&2; exit 1; fi
command -v dockerd >/dev/null || { echo "error: dockerd is not installed (apt-get install -y docker.io)" >&2; exit 1; }
log="${DOCKERD_LOG:-/var/log/forge-hooks-dockerd.log}"
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  answers && { echo "dockerd started (log: $log)"; exit 0; }
  sleep 0.5
done
echo "error: dockerd did not answer within 30 s; see $log" >&2
tail -20 "$log" >&2 || true
exit 1
