#!/usr/bin/env bash
# Opens the local explorer (GET /graphql) in headless Chromium with every host
# but 127.0.0.1 unresolvable (offline), runs the pre-filled History query as a
# signed-in user, and fails if any request left this machine.
# Needs Chromium (`apt-get install chromium`, or CHROMIUM_PATH=/path/to/chrome)
# and the PostgreSQL the tests use (TEST_DATABASE_URL, see README "Test").
set -euo pipefail
cd "$(dirname "$0")/.."
REQUIRE_BROWSER=1 exec npx jest test/explorer-browser.test.ts "$@"
