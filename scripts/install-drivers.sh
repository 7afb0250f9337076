#!/usr/bin/env bash
# Installs the other official drivers the end-to-end scenarios run with: pymongo (pinned, from
# PyPI, into .venv/pymongo, with the Prometheus project's own text-format parser,
# prometheus_client, which the /metrics test reads the exposition with) and the Go driver (pinned in test/drivers/go/go.mod, from the Go
# module proxy), building test/drivers/go into .cache/drivers/. Idempotent; prints
# "PYTHON GO_BINARY".
set -euo pipefail
PYMONGO_VERSION="${PYMONGO_VERSION:-4.20.0}"
PROMETHEUS_CLIENT_VERSION=0.26.0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv/pymongo"
STAMP="$VENV/.pymongo-$PYMONGO_VERSION-prometheus-$PROMETHEUS_CLIENT_VERSION"
if [[ ! -f "$STAMP" ]]; then
  command -v python3 >/dev/null || { echo "install-drivers: python3 not found on PATH" >&2; exit 1; }
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "pymongo==$PYMONGO_VERSION" "prometheus_client==$PROMETHEUS_CLIENT_VERSION" >&2
  touch "$STAMP"
fi
SRC="$ROOT/test/drivers/go"
HASH="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC"/*.go | sha256sum | cut -c1-12)"
BIN="$ROOT/.cache/drivers/go-scenarios-$HASH"
if [[ ! -x "$BIN" ]]; then
  command -v go >/dev/null || { echo "install-drivers: Go toolchain not found on PATH" >&2; exit 1; }
  mkdir -p "$ROOT/.cache/drivers"
  (cd "$SRC" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -o "$BIN.tmp" . >&2)
  mv "$BIN.tmp" "$BIN"
fi
echo "$VENV/bin/python $BIN"
