#!/usr/bin/env bash
# Dashboard benchmark (a harness that prints figures): seeds a scratch Redis with N jobs and M sessions through the
# queue's own scripts (hooks-bench seed: most succeeded, some failed waiting for a retry, some dead, some parked),
# then measures each page of the release dashboard with wrk — 1 connection (one operator) and 8 — and checks that no
# page ran KEYS or SCAN (Redis' command statistics).
# Usage: scripts/bench-dashboard.sh [jobs=100000] [sessions=10000] [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs_n="${1:-100000}"; sessions_n="${2:-10000}"; secs="${3:-10}"
scripts/install-deps.sh wrk
swift build -c release --product hooks-dashboard >/dev/null
swift build -c release --product hooks-bench >/dev/null
work="$(mktemp -d)"; rport=16398; dport=19191
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
redis-server --port $rport --bind 127.0.0.1 --save "" --appendonly no --daemonize no --loglevel warning >"$work/redis.log" 2>&1 &
for _ in $(seq 50); do redis-cli -p $rport ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "seeding $jobs_n jobs over $sessions_n sessions…"
.build/release/hooks-bench seed --redis "redis://127.0.0.1:$rport" --jobs "$jobs_n" --sessions "$sessions_n" --workers 4 | tail -1
cat >"$work/config.yaml" <<YAML
redis: {url: "redis://127.0.0.1:$rport"}
dashboard: {listen: "127.0.0.1:$dport", read_only: true}
agents:
  boss: {image: none, credentials_dir: $work/boss/c, work_dir: $work/boss/w}
  dev: {image: none, credentials_dir: $work/dev/c, work_dir: $work/dev/w}
  reviewer: {image: none, credentials_dir: $work/reviewer/c, work_dir: $work/reviewer/w}
YAML
.build/release/hooks-dashboard -c "$work/config.yaml" --log-level error >"$work/dashboard.log" 2>&1 &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$dport/healthz" >/dev/null && break; sleep 0.1; done
dead_id=$(redis-cli -p $rport LINDEX hooks:dead 0)
redis-cli -p $rport CONFIG RESETSTAT >/dev/null
echo "Redis: $(redis-cli -p $rport DBSIZE) keys, $(redis-cli -p $rport INFO memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r'); ${secs}s per page, $(nproc) cores"
printf "%-34s %-12s %9s %9s %9s\n" page connections req/s p50_ms p99_ms
for page in "/" "/jobs" "/jobs?status=dead" "/jobs?agent=dev&repo=acme/repo-3" "/jobs/$dead_id" "/sessions" "/dead" "/containers"; do
  for c in 1 8; do
    r=$(wrk -t1 -c$c -d"${secs}s" --latency -s scripts/bench/page.lua "http://127.0.0.1:$dport$page" | grep ^RESULT)
    rps=$(sed -E 's/.*requests\/s=([0-9.]+).*/\1/' <<<"$r"); p50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$r")
    p99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$r"); other=$(sed -E 's/.*other=([0-9]+).*/\1/' <<<"$r")
    label="$page"; [ "$page" = "/jobs/$dead_id" ] && label="/jobs/<id>"
    printf "%-34s %-12s %9s %9s %9s%s\n" "$label" "$c" "$rps" "$p50" "$p99" "$( [ "$other" != 0 ] && echo "  ($other non-200!)")"
  done
done
scans=$(redis-cli -p $rport INFO commandstats | grep -E '^cmdstat_(keys|scan|hscan|sscan|zscan):' || true)
echo "KEYS/SCAN calls during the run: ${scans:-none}"
