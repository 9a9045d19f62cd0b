#!/usr/bin/env bash
# The npm clients of the protocol tests (tests/protocols/package.json, exact versions from
# its package-lock.json): @ag-ui/client and the AI SDK's `ai`. Needs Node 20+ and npm.
# Installs once; again only when the lock file changes.
set -euo pipefail
cd "$(dirname "$0")/../tests/protocols"
stamp=node_modules/.installed
if [[ -f $stamp && $stamp -nt package-lock.json ]]; then
    exit 0
fi
command -v npm >/dev/null || { echo "npm is missing: install Node.js 20+ and npm" >&2; exit 1; }
# `ai` 7 declares node >=22 in engines; the parts the tests use run on Node 20.
npm ci --no-audit --no-fund --loglevel=error --engine-strict=false
touch "$stamp"
