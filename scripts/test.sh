#!/usr/bin/env bash
# The test command: installs what the tests need, then builds and runs every test.
# Tests start their own redis-server (and later nginx, dockerd) on free ports; nothing else needs to be running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --build-tests
swift test --skip-build "$@"
