#!/usr/bin/env bash
# Redis failover benchmark (a harness that prints figures): a master, two replicas and three sentinels on loopback
# (down-after-milliseconds = $DOWN_AFTER_MS, default 1000), the release Producer finding the master through them with
# replicas_ack: 1 (with two replicas, one is left to confirm writes after a failover). A client posts a signed webhook every 20 ms; the current master is SIGKILLed; the time from the kill
# to the first 202 is recorded; the old master is restarted (it comes back as a replica) and the next round kills the
# new master. Then the producer's throughput with replicas_ack 0 and 1, side by side, with wrk.
# Usage: scripts/bench-failover.sh [failovers=5] [seconds=10] [connections=32]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"; secs="${2:-10}"; conns="${3:-32}"; down_after="${DOWN_AFTER_MS:-1000}"
scripts/install-deps.sh wrk
swift build -c release --product Producer >/dev/null
work="$(mktemp -d)"; base=16500; pport=18180; oport=18190
ports=($base $((base + 1)) $((base + 2))); sentinels=($((base + 10)) $((base + 11)) $((base + 12)))
cleanup() { kill $(jobs -p) 2>/dev/null || true; pkill -f "$work/" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
start_redis() {  # port [replicaof-port]
  local extra=(); [ -n "${2:-}" ] && extra=(--replicaof 127.0.0.1 "$2")
  mkdir -p "$work/r$1"
  redis-server --port "$1" --bind 127.0.0.1 --dir "$work/r$1" --save "" --appendonly no --daemonize no --loglevel warning \
    "${extra[@]}" >"$work/r$1/log" 2>&1 &
  echo $! >"$work/r$1/pid"
  for _ in $(seq 50); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.1; done
}
start_redis "${ports[0]}"; start_redis "${ports[1]}" "${ports[0]}"; start_redis "${ports[2]}" "${ports[0]}"
for s in "${sentinels[@]}"; do
  cat >"$work/s$s.conf" <<CONF
port $s
bind 127.0.0.1
dir $work
sentinel resolve-hostnames no
sentinel monitor bench 127.0.0.1 ${ports[0]} 2
sentinel down-after-milliseconds bench $down_after
sentinel failover-timeout bench 4000
sentinel parallel-syncs bench 1
CONF
  redis-server "$work/s$s.conf" --sentinel >"$work/s$s.log" 2>&1 &
done
master() { redis-cli -p "${sentinels[0]}" SENTINEL get-master-addr-by-name bench 2>/dev/null | tail -1; }
settled() {
  for s in "${sentinels[@]}"; do
    [ "$(redis-cli -p "$s" SENTINEL sentinels bench 2>/dev/null | grep -c '^ip$')" = 2 ] || return 1
    [ "$(redis-cli -p "$s" SENTINEL replicas bench 2>/dev/null | grep -c '^ip$')" = 2 ] || return 1
  done
}
for _ in $(seq 150); do settled && break; sleep 0.2; done
settled || { echo "sentinels did not settle" >&2; exit 1; }
write_config() {  # replicas_ack
  cat >"$work/config.yaml" <<YAML
redis:
  url: "redis://127.0.0.1:${ports[0]}"
  sentinel: {master_name: bench, addresses: ["127.0.0.1:${sentinels[0]}", "127.0.0.1:${sentinels[1]}", "127.0.0.1:${sentinels[2]}"]}
  replicas_ack: $1
producer: {listen: "127.0.0.1:$pport", ops_listen: "127.0.0.1:$oport"}
forges: {github: {secret_env: BENCH_SECRET}}
agents: {dev: {image: none, credentials_dir: $work/dev/c, work_dir: $work/dev/w}}
rules:
  - {agent: dev, events: [issue_comment], mention: true, prompt: "{{comment}}"}
YAML
}
start_producer() {
  BENCH_SECRET=bench-secret .build/release/Producer -c "$work/config.yaml" --log-level error >>"$work/producer.log" 2>&1 &
  echo $! >"$work/producer.pid"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$oport/readyz" >/dev/null && return; sleep 0.1; done
  echo "producer did not start: $(tail -3 "$work/producer.log")" >&2; exit 1
}
python3 - "$work/body.json" <<'PY'
import json, sys
d = json.load(open("../shared/forge-payloads/github/issue_comment.created.json"))
d["comment"]["body"] = "@dev failover benchmark"
open(sys.argv[1], "w").write(json.dumps(d))
PY
export BENCH_BODY="$work/body.json"
export BENCH_SIG="$(openssl dgst -sha256 -hmac bench-secret -hex <"$BENCH_BODY" | awk '{print $NF}')"
post() {  # delivery id → HTTP status
  curl -s -o /dev/null -m 5 -w '%{http_code}' -X POST "http://127.0.0.1:$pport/webhooks/github" -H 'Content-Type: application/json' \
    -H 'X-GitHub-Event: issue_comment' -H "X-GitHub-Delivery: $1" -H "X-Hub-Signature-256: sha256=$BENCH_SIG" --data-binary @"$BENCH_BODY"
}
now_ms() { date +%s%3N; }

write_config 1; start_producer
echo "failovers: down-after-milliseconds $down_after, replicas_ack 1, a webhook every 20 ms, $(nproc) cores"
times=()
for round in $(seq "$rounds"); do
  current=$(master)
  for i in $(seq 20); do post "warm-$round-$i" >/dev/null; sleep 0.02; done
  kill -KILL "$(cat "$work/r$current/pid")"; killed=$(now_ms); refused=0; n=0
  while :; do
    n=$((n + 1)); code=$(post "round-$round-$n" || true)
    if [ "$code" = 202 ] && [ "$(master)" != "$current" ]; then break; fi
    [ "$code" != 202 ] && refused=$((refused + 1))
    [ $(( $(now_ms) - killed )) -gt 60000 ] && { echo "round $round: no 202 within 60 s" >&2; exit 1; }
    sleep 0.02
  done
  took=$(( $(now_ms) - killed )); times+=("$took")
  echo "  round $round: master :$current killed → first 202 on :$(master) after ${took} ms ($refused requests refused meanwhile)"
  start_redis "$current"   # the old master comes back; the sentinels make it a replica of the new one
  for _ in $(seq 150); do
    [ "$(redis-cli -p "$current" ROLE 2>/dev/null | head -1)" = slave ] && \
      redis-cli -p "$current" INFO replication | grep -q 'master_link_status:up' && break
    sleep 0.2
  done
  sleep 1
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
echo "master death → first 202: p50 ${sorted[$(( ${#sorted[@]} / 2 ))]} ms, max ${sorted[-1]} ms over ${#sorted[@]} failovers"

echo "throughput: wrk -c$conns -d${secs}s, $(wc -c <"$BENCH_BODY")-byte issue_comment, unique delivery ids"
for ack in 0 1; do
  kill "$(cat "$work/producer.pid")"; wait "$(cat "$work/producer.pid")" 2>/dev/null || true
  write_config "$ack"; start_producer
  r=$(BENCH_RUN="ack$ack-" wrk -t2 -c"$conns" -d"${secs}s" --latency -s scripts/bench/webhook.lua "http://127.0.0.1:$pport" | grep ^RESULT)
  echo "  replicas_ack $ack: ${r#RESULT }"
done
