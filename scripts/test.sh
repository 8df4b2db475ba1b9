#!/usr/bin/env bash
# The test command: installs what the tests need, then builds and runs every test.
# Tests start their own redis-server and nginx on free ports; dockerd is started here if no engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh chromium   # the dashboard tests look at pages in a real headless Chromium
scripts/start-dockerd.sh
swift format lint --strict -r Sources Tests Package.swift   # style is part of the test: any finding fails
swift build --build-tests
swift test --skip-build "$@"
