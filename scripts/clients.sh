#!/usr/bin/env bash
# Installs the real client CLIs the tests drive (tests/test_claude_code.py …) into .cache/clients,
# from the npm registry, pinned. Idempotent and quick when already there (npm's cache is reused).
# Without npm: in CI it installs Debian's nodejs and npm; elsewhere it says so and the tests that
# need a CLI skip (in CI they fail instead: a test that cannot run must not pass).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=(
  "@anthropic-ai/claude-code@2.1.332"
  "@openai/codex@0.171.0"
  "@continuedev/cli@1.5.47"  # Continue's `cn`: tests/test_readme_clients.py runs README's Continue config
  "openai@7.59.0"            # the openai npm package: README's Node snippet (tests/test_readme_clients.py)
  "@modelcontextprotocol/server-filesystem@2026.8.31"  # a published MCP server over stdio (tests/test_mcp_published.py)
)
if ! command -v npm >/dev/null 2>&1; then
  if [ -n "${CI:-}" ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "clients.sh: npm not found; the real-client tests will be skipped" >&2
    exit 0
  fi
fi
mkdir -p .cache/clients
# --no-save: nothing but node_modules/ is written; the platform binary comes from the registry
# (an optional dependency), so nothing is fetched from anywhere else.
npm install --prefix .cache/clients --no-audit --no-fund --no-save --loglevel=error "${CLIENTS[@]}"
