#!/usr/bin/env bash
# The whole test suite: installs what it needs, typechecks, lints, then runs every test
# (unit, property-based and end-to-end against real FerretDB with the official driver).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
echo "test: lint" >&2
npx eslint . >&2
echo "test: running tests" >&2
# Tests share the machine's two cores with FerretDB and the proxy: run files one at a time.
exec node --test --test-concurrency=1 --test-reporter=spec "$@" dist/test/*.test.js
