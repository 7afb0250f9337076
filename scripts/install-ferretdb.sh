#!/usr/bin/env bash
# Builds FerretDB v1 (SQLite backend) from the Go module proxy into .cache/ferretdb/.
# `go install .../cmd/ferretdb@v1.24.2` builds a binary that panics at start (its generated
# version.txt is missing from the module), so we build through a tiny local wrapper module.
set -euo pipefail
VERSION="${FERRETDB_VERSION:-v1.24.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.cache/ferretdb"
BIN="$DEST/ferretdb-$VERSION"
if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { echo "install-ferretdb: Go toolchain not found on PATH" >&2; exit 1; }
mkdir -p "$DEST/build"
cd "$DEST/build"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
if [[ ! -f go.mod ]]; then go mod init mongoplex.local/ferretdb-build >&2; fi
go get "github.com/FerretDB/FerretDB/cmd/ferretdb@$VERSION" >&2
# The module ships build/version/version.txt empty or absent; give it a value so the binary starts.
MODDIR="$(go list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)"
if [[ ! -s "$MODDIR/build/version/version.txt" ]]; then
  chmod -R u+w "$MODDIR/build/version" 2>/dev/null || true
  echo "$VERSION" > "$MODDIR/build/version/version.txt" 2>/dev/null || true
fi
go build -o "$BIN.tmp" github.com/FerretDB/FerretDB/cmd/ferretdb >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
