#!/usr/bin/env bash
# Builds Jaeger v2 (github.com/jaegertracing/jaeger/cmd/jaeger: a distribution of the
# OpenTelemetry Collector with Jaeger's storage and query service) from the Go module proxy into
# .cache/jaeger/. The tracing test and `npm run dev -- --traces` send mongoplex's OTLP to it and
# read the spans back through its query API. The module carries no UI assets (Jaeger's release
# builds add them from the jaeger-ui repository), so the query service's own pages are a
# placeholder; the API is complete. v1.75.0: the newest release approved on this project's
# module proxy (v1.76.0 is served but not an approved release).
set -euo pipefail
VERSION="${JAEGER_VERSION:-v1.75.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.cache/jaeger"
BIN="$DEST/jaeger-$VERSION"
if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { echo "install-jaeger: Go toolchain not found on PATH" >&2; exit 1; }
mkdir -p "$DEST/build"
cd "$DEST/build"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
if [[ ! -f go.mod ]]; then go mod init mongoplex.local/jaeger-build >&2; fi
go get "github.com/jaegertracing/jaeger/cmd/jaeger@$VERSION" >&2
go build -o "$BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
