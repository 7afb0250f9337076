#!/usr/bin/env bash
# Builds kubectl (scripts/kubectl: k8s.io/kubectl's command, versions pinned in its go.mod) from
# the Go module proxy into .cache/kubectl/, for the manifest tests' `kubectl kustomize`. Prints
# the binary's path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="$ROOT/scripts/kubectl"
HASH="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC"/*.go | sha256sum | cut -c1-12)"
BIN="$ROOT/.cache/kubectl/kubectl-$HASH"
if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { echo "install-kubectl: Go toolchain not found on PATH" >&2; exit 1; }
mkdir -p "$ROOT/.cache/kubectl"
# The library's version string is stamped at build time, as Kubernetes' own build does.
VERSION="v$(cd "$SRC" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go list -m -f '{{.Version}}' k8s.io/kubectl | sed 's/^v0\./1./')"
(cd "$SRC" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -ldflags "-X k8s.io/component-base/version.gitVersion=$VERSION -X k8s.io/client-go/pkg/version.gitVersion=$VERSION" -o "$BIN.tmp" . >&2)
mv "$BIN.tmp" "$BIN"
echo "$BIN"
