#!/usr/bin/env bash
# The dev stack: installs what is missing, then runs embedded FerretDB + mongoplex and prints
# the connection string. MONGOPLEX_UPSTREAM_SERVERS=host:port points it at your own MongoDB;
# --traces adds a Jaeger v2 that mongoplex sends its spans to.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec node dist/scripts/dev-stack.js "$@"
