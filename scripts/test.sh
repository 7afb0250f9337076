#!/usr/bin/env bash
# The whole test suite: installs what it needs, typechecks, lints, then runs every test
# (unit, property-based and end-to-end against real FerretDB with the official driver).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
echo "test: lint" >&2
npx eslint . >&2
# Offline supply-chain check: every locked package comes from the npm registry over https with
# an integrity hash. (`npm audit` needs the registry's audit endpoint, which this machine cannot
# reach: run it in CI that can.)
echo "test: lockfile" >&2
npx lockfile-lint --path package-lock.json --type npm --allowed-hosts npm --validate-https --validate-integrity --validate-package-names >&2
echo "test: running tests" >&2
# Tests share the machine's two cores with FerretDB and the proxy: run files one at a time.
node --test --test-concurrency=1 --test-reporter=spec "$@" dist/test/*.test.js
# A short bounded fuzz pass (decoders, TCP ingress, Envoy ext_proc): exits 1 on any crash,
# hang, internal error or failed health check. Longer runs: npm run bench -- fuzz --seconds 600.
echo "test: fuzz (${FUZZ_SECONDS:-15} s)" >&2
node dist/bench/run.js fuzz --seconds "${FUZZ_SECONDS:-15}" >&2
