#!/usr/bin/env bash
# Fault benchmark harness (not run in CI): the SIGKILL storm of the fault suite with many kills. Three workers
# (2 slots each) run six sessions of jobs while one of them is SIGKILLed at a random moment every 0.3–1.5 s and
# restarted (half under the same id, half under a new one). Prints kills, jobs, re-attempts, lost and double runs.
# Usage: scripts/bench-faults.sh [kills]   (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-50}"
[[ "$kills" =~ ^[0-9]+$ && "$kills" -ge 1 ]] || { echo "error: kills must be a positive number, got '$kills'" >&2; exit 2; }
scripts/install-deps.sh
scripts/start-dockerd.sh
swift build --build-tests
FAULT_KILLS="$kills" swift test --skip-build --filter 'FaultSuiteTests/sigkilledWorkersLoseNoJobAndNeverRunOneTwice' 2>&1 \
  | grep -E 'fault suite|^jobs|^  |passed|failed|error'
