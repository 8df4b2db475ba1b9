#!/usr/bin/env bash
# The test command: installs what the tests need, then builds and runs every test.
# Tests start their own redis-server and nginx on free ports; dockerd is started here if no engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh chromium   # the dashboard tests look at pages in a real headless Chromium
scripts/start-dockerd.sh
swift format lint --strict -r Sources Tests Package.swift   # style is part of the test: any finding fails
# The real-CLI tests' agent image: the CLI comes from PyPI (once; kept in /var/cache/forge-hooks). Built here so a
# download problem fails early with its own message, and no test's time limit includes it.
FORGE_HOOKS_STUB_REUSE=1 deploy/agent-claude/build-image.sh forge-hooks/agent-claude:test
swift build --build-tests
swift test --skip-build "$@"
