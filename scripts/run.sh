#!/usr/bin/env bash
# Runs the whole system on this machine: Redis (append-only file on), dockerd (if no engine answers), the producer,
# two workers, the dashboard and a demo agent image (the stub CLI). Safe to run again: what already runs is left alone.
#
#   scripts/run.sh          start (or check) everything, print how to send a test event
#   scripts/run.sh stop     stop everything this script started
#   scripts/run.sh status   what is running
#
# State lives in $FORGE_HOOKS_DATA (default: <repo>/.data): config, webhook secret, Redis data, agent dirs, logs.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
data="${FORGE_HOOKS_DATA:-$repo/.data}"
redis_port="${FORGE_HOOKS_REDIS_PORT:-6380}"
http_port="${FORGE_HOOKS_PORT:-8080}"
ops_port="${FORGE_HOOKS_OPS_PORT:-9090}"
dashboard_port="${FORGE_HOOKS_DASHBOARD_PORT:-9191}"
image="forge-hooks/agent-stub:latest"
run="$data/run"

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_all() {
  for name in dashboard worker-2 worker-1 producer; do
    if pid_alive "$run/$name.pid"; then
      kill -TERM "$(cat "$run/$name.pid")" 2>/dev/null || true
      for _ in $(seq 1 150); do pid_alive "$run/$name.pid" || break; sleep 0.2; done
      pid_alive "$run/$name.pid" && kill -KILL "$(cat "$run/$name.pid")" 2>/dev/null || true
      echo "stopped $name"
    fi
    rm -f "$run/$name.pid"
  done
  if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
    redis-cli -p "$redis_port" shutdown >/dev/null 2>&1 || true
    echo "stopped redis (port $redis_port; data kept in $data/redis)"
  fi
  # The demo's agent containers (the workers created them; named volumes would survive).
  containers=$(docker ps -aq --filter label=forge-hooks.host=demo 2>/dev/null || true)
  if [ -n "$containers" ]; then
    docker rm -f $containers >/dev/null && echo "removed the demo agent containers"
  fi
  if [ -f "$run/dockerd.started" ]; then
    pkill -TERM -x dockerd 2>/dev/null && echo "stopped dockerd (this script had started it)" || true
    rm -f "$run/dockerd.started"
  fi
}

status() {
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && echo "redis     running on 127.0.0.1:$redis_port" || echo "redis     stopped"
  for name in producer worker-1 worker-2 dashboard; do
    pid_alive "$run/$name.pid" && echo "$name running (pid $(cat "$run/$name.pid"), log $data/logs/$name.log)" || echo "$name stopped"
  done
  curl -sf "http://127.0.0.1:$ops_port/readyz" >/dev/null 2>&1 && echo "readyz    ok" || echo "readyz    not ready"
}

case "${1:-start}" in
  stop) stop_all; exit 0 ;;
  status) status; exit 0 ;;
  start) ;;
  *) echo "usage: scripts/run.sh [start|stop|status]" >&2; exit 2 ;;
esac

mkdir -p "$data"/{redis,logs,run,agents}
echo "==> packages";   scripts/install-deps.sh curl docker.io busybox-static
echo "==> docker"
if ! curl -sf --max-time 2 --unix-socket /var/run/docker.sock http://docker/_ping >/dev/null 2>&1; then
  DOCKERD_LOG="$data/logs/dockerd.log" scripts/start-dockerd.sh && touch "$run/dockerd.started"
else
  echo "docker engine already answers"
fi

echo "==> redis (append-only file on, port $redis_port)"
if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  sed -e "s#@DATA@#$data/redis#g" -e "s#@PORT@#$redis_port#g" deploy/redis/redis-demo.conf >"$data/redis/redis.conf"
  redis-server "$data/redis/redis.conf"
  for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
redis-cli -p "$redis_port" ping >/dev/null || { echo "error: redis did not start; see $data/redis/redis.log" >&2; exit 1; }

echo "==> build (release)"
swift build -c release --product Producer
swift build -c release --product Worker
swift build -c release --product hooksctl
swift build -c release --product hooks-dashboard
bin="$repo/.build/release"

echo "==> demo agent image"
# Rebuilt when the stub changed (an image built from the same files is kept).
FORGE_HOOKS_STUB_REUSE=1 deploy/agent-stub/build-image.sh "$image"

echo "==> config"
if [ ! -f "$data/webhook-secret" ]; then
  (umask 077; openssl rand -hex 32 >"$data/webhook-secret")
fi
secret="$(cat "$data/webhook-secret")"
if [ ! -f "$data/dashboard-password" ]; then
  (umask 077; openssl rand -base64 18 >"$data/dashboard-password")
fi
if [ ! -f "$data/config.yaml" ]; then
  sed -e "s#@DATA@#$data#g" -e "s#@REDIS_PORT@#$redis_port#g" -e "s#@HTTP_PORT@#$http_port#g" -e "s#@OPS_PORT@#$ops_port#g" \
    -e "s#@IMAGE@#$image#g" -e "s#@DASHBOARD_PORT@#$dashboard_port#g" deploy/demo/config.yaml.in >"$data/config.yaml"
  echo "wrote $data/config.yaml"
elif ! grep -q '^dashboard:' "$data/config.yaml"; then
  # A config written before the dashboard existed: give it the demo's dashboard section.
  echo "dashboard: {listen: \"127.0.0.1:$dashboard_port\", password_file: \"$data/dashboard-password\"}" >>"$data/config.yaml"
  echo "added a dashboard section to $data/config.yaml"
fi
"$bin/Worker" agent-env sync -c "$data/config.yaml" >/dev/null

echo "==> services"
start() {  # name, command…
  local name="$1"; shift
  if pid_alive "$run/$name.pid"; then echo "$name already running (pid $(cat "$run/$name.pid"))"; return; fi
  nohup "$@" >>"$data/logs/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
  echo "started $name (pid $!, log $data/logs/$name.log)"
}
start producer "$bin/Producer" -c "$data/config.yaml"
start worker-1 "$bin/Worker" -c "$data/config.yaml" --worker-id demo-worker-1 --host-id demo --metrics-listen "127.0.0.1:$((ops_port + 1))"
start worker-2 "$bin/Worker" -c "$data/config.yaml" --worker-id demo-worker-2 --host-id demo --metrics-listen "127.0.0.1:$((ops_port + 2))"
start dashboard "$bin/hooks-dashboard" -c "$data/config.yaml"
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ops_port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$ops_port/readyz" >/dev/null || { echo "error: producer not ready; see $data/logs/producer.log" >&2; tail -5 "$data/logs/producer.log" >&2; exit 1; }

# A Forgejo-shaped "issue opened" event with the triage label, signed as Forgejo signs it.
sample="$data/sample-issue-opened.json"
cat >"$sample" <<JSON
{"action":"opened","number":1,"issue":{"id":1,"number":1,"title":"Demo: the README typo","body":"Please triage this. @dev may fix it.","labels":[{"id":1,"name":"triage"}],"assignees":[],"user":{"login":"alice"},"html_url":"http://forge.local/acme/demo/issues/1","state":"open"},"repository":{"id":1,"full_name":"acme/demo","name":"demo","owner":{"login":"acme"}},"sender":{"login":"alice","username":"alice"}}
JSON
sig="$(openssl dgst -sha256 -hmac "$secret" -hex <"$sample" | awk '{print $NF}')"
cat <<MSG

forge-hooks is running: webhooks on http://127.0.0.1:$http_port/webhooks/{forgejo,gitea,github}, ops on 127.0.0.1:$ops_port
(workers' /metrics on 127.0.0.1:$((ops_port + 1)) and $((ops_port + 2))),
Redis on 127.0.0.1:$redis_port (append-only file in $data/redis), agents boss/dev/reviewer (image $image).

Dashboard: http://127.0.0.1:$dashboard_port/ (actions: sign in with any name and the password in $data/dashboard-password)

Send a signed sample event (an issue opened with the 'triage' label → the boss agent runs):

  curl -s -X POST http://127.0.0.1:$http_port/webhooks/forgejo -H 'Content-Type: application/json' \\
    -H 'X-Forgejo-Event: issues' -H "X-Forgejo-Delivery: demo-\$(date +%s%N)" \\
    -H 'X-Forgejo-Signature: $sig' --data-binary @$sample

Watch it:

  redis-cli -p $redis_port LRANGE hooks:queue:boss 0 -1
  redis-cli -p $redis_port HGETALL hooks:sessions
  redis-cli -p $redis_port --scan --pattern 'hooks:job:*'          # then HGETALL hooks:job:<id>
  redis-cli -p $redis_port LRANGE hooks:log:<id> 0 -1               # the agent's output
  $bin/hooksctl status --redis redis://127.0.0.1:$redis_port
  $bin/Worker containers -c $data/config.yaml --host-id demo
  tail -f $data/logs/*.log

Stop everything: scripts/run.sh stop
MSG
