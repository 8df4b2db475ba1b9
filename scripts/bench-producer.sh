#!/usr/bin/env bash
# Producer benchmark (a harness that prints figures): wrk posts signed ~8 KB issue_comment webhooks with unique
# delivery ids over 64 connections to the release producer (real Redis), checks that the number of 202s equals the
# jobs in Redis, then runs the same load against a bare Hummingbird route that only reads the body, for the ratio,
# and against the same route plus the producer's one Redis call (enqueue through the queue core): the ceiling a
# producer whose own work cost nothing would reach on this machine.
# Usage: scripts/bench-producer.sh [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"; conns="${2:-64}"
scripts/install-deps.sh wrk
swift build -c release --product Producer >/dev/null
swift build -c release --product hooks-bench >/dev/null
work="$(mktemp -d)"; rport=16399; pport=18080; oport=18090; bport=18081
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
redis-server --port $rport --bind 127.0.0.1 --save "" --appendonly no --daemonize no --loglevel warning >"$work/redis.log" 2>&1 &
for _ in $(seq 50); do redis-cli -p $rport ping >/dev/null 2>&1 && break; sleep 0.1; done
cat >"$work/config.yaml" <<YAML
redis: {url: "redis://127.0.0.1:$rport"}
producer: {listen: "127.0.0.1:$pport", ops_listen: "127.0.0.1:$oport"}
forges: {github: {secret_env: BENCH_SECRET}}
agents: {dev: {image: forge-hooks/agent-stub:latest}}
rules:
  - {agent: dev, events: [issue_comment], mention: true, prompt: "{{sender}}: {{comment}}"}
YAML
BENCH_SECRET=bench-secret .build/release/Producer -c "$work/config.yaml" --log-level error >"$work/producer.log" 2>&1 &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$oport/readyz" >/dev/null && break; sleep 0.1; done
python3 - "$work/body.json" <<'PY'
import json, sys
d = json.load(open("../shared/forge-payloads/github/issue_comment.created.json"))
def strip(o):  # drop the API link fields so the comment text makes up the ~8 KB
    if isinstance(o, dict):
        for k in [k for k in o if k.endswith("_url") and k != "html_url"]: del o[k]
        for v in o.values(): strip(v)
strip(d)
d["comment"]["body"] = "@dev please have a look. "
filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit. "
while len(json.dumps(d)) + len(filler) <= 8192:
    d["comment"]["body"] += filler
open(sys.argv[1], "w").write(json.dumps(d))
PY
export BENCH_BODY="$work/body.json"
export BENCH_SIG="$(openssl dgst -sha256 -hmac bench-secret -hex <"$BENCH_BODY" | awk '{print $NF}')"
echo "body: $(wc -c <"$BENCH_BODY") bytes, $conns connections, ${secs}s, 2 wrk threads, $(nproc) cores"
wrk -t2 -c"$conns" -d"${secs}s" --latency -s scripts/bench/webhook.lua "http://127.0.0.1:$pport" >"$work/producer.wrk"
producer=$(grep ^RESULT "$work/producer.wrk")
sleep 1  # let requests still in flight when wrk stopped finish
jobs_in_redis=$(redis-cli -p $rport LLEN hooks:queue:dev)
# wrk does not count answers that arrive after its window closes; the producer's own counter of 202s does.
accepted=$(curl -s "http://127.0.0.1:$oport/metrics" | awk '/^webhook_requests_total/ && /outcome="accepted"/ {s+=$NF} END {printf "%d", s}')
echo "producer : ${producer#RESULT }"
echo "           202s sent (producer metrics): $accepted, jobs in Redis: $jobs_in_redis  ($( [ "$accepted" = "$jobs_in_redis" ] && echo "equal, OK" || echo "MISMATCH"))"
.build/release/hooks-bench bare-server --port $bport >"$work/bare.log" 2>&1 &
bare_pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$bport/" && break; sleep 0.1; done
wrk -t2 -c"$conns" -d"${secs}s" --latency -s scripts/bench/webhook.lua "http://127.0.0.1:$bport" >"$work/bare.wrk"
bare=$(grep ^RESULT "$work/bare.wrk")
echo "bare     : ${bare#RESULT }"
kill "$bare_pid"; wait "$bare_pid" 2>/dev/null || true
redis-cli -p $rport FLUSHALL >/dev/null
.build/release/hooks-bench bare-server --port $bport --enqueue --redis "redis://127.0.0.1:$rport" >"$work/enqueue.log" 2>&1 &
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$bport/" && break; sleep 0.1; done
wrk -t2 -c"$conns" -d"${secs}s" --latency -s scripts/bench/webhook.lua "http://127.0.0.1:$bport" >"$work/enqueue.wrk"
enqueue=$(grep ^RESULT "$work/enqueue.wrk")
echo "enqueue  : ${enqueue#RESULT }  (bare route + the producer's Redis call only)"
rate() { sed 's/.*requests\/s=\([0-9]*\).*/\1/' <<<"$1"; }
p=$(rate "$producer"); b=$(rate "$bare"); e=$(rate "$enqueue")
echo "ratio    : producer/bare = $(awk -v p="$p" -v b="$b" 'BEGIN{printf "%.0f%%", 100*p/b}'), enqueue-only/bare = $(awk -v p="$e" -v b="$b" 'BEGIN{printf "%.0f%%", 100*p/b}'), producer/enqueue-only = $(awk -v p="$p" -v b="$e" 'BEGIN{printf "%.0f%%", 100*p/b}')"
[ "$accepted" = "$jobs_in_redis" ]
