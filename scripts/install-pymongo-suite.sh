#!/usr/bin/env bash
# Installs pymongo's own test suite for `npm run bench -- driver-suite`: the pymongo release that
# scripts/install-drivers.sh pins (from PyPI, into .venv/pymongo-suite with pytest and
# pytest-asyncio, pinned), and the test tree of that same release, taken from its source
# distribution on PyPI (only test/ and pyproject.toml, so the tests import the installed wheel).
# One line of the tree is adapted for FerretDB (the same for every path the bench compares):
# FerretDB's getParameter "*" has no enableTestCommands, which test/__init__.py indexes.
# Idempotent; prints "PYTHON SUITE_DIR". Not part of setup.sh: the suite is not run by CI.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYMONGO_VERSION="$(sed -n 's/^PYMONGO_VERSION="\${PYMONGO_VERSION:-\(.*\)}"$/\1/p' "$ROOT/scripts/install-drivers.sh")"
[[ -n "$PYMONGO_VERSION" ]] || { echo "install-pymongo-suite: no PYMONGO_VERSION in scripts/install-drivers.sh" >&2; exit 1; }
PYTEST_VERSION=8.4.2
PYTEST_ASYNCIO_VERSION=1.2.0
VENV="$ROOT/.venv/pymongo-suite"
STAMP="$VENV/.pymongo-$PYMONGO_VERSION-pytest-$PYTEST_VERSION-$PYTEST_ASYNCIO_VERSION"
if [[ ! -f "$STAMP" ]]; then
  command -v python3 >/dev/null || { echo "install-pymongo-suite: python3 not found on PATH" >&2; exit 1; }
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "pymongo==$PYMONGO_VERSION" "pytest==$PYTEST_VERSION" "pytest-asyncio==$PYTEST_ASYNCIO_VERSION" >&2
  touch "$STAMP"
fi
SUITE="$ROOT/.cache/pymongo-suite/pymongo-$PYMONGO_VERSION"
if [[ ! -f "$SUITE/pyproject.toml" ]]; then
  DL="$ROOT/.cache/pymongo-suite/download"
  mkdir -p "$DL"
  "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-binary :all: --no-deps "pymongo==$PYMONGO_VERSION" -d "$DL" >&2
  tar -xzf "$DL/pymongo-$PYMONGO_VERSION.tar.gz" -C "$ROOT/.cache/pymongo-suite" "pymongo-$PYMONGO_VERSION/test" "pymongo-$PYMONGO_VERSION/pyproject.toml"
  for f in "$SUITE/test/__init__.py" "$SUITE/test/asynchronous/__init__.py"; do
    sed -i 's/self\.server_parameters\["enableTestCommands"\]/self.server_parameters.get("enableTestCommands")/' "$f"
    grep -q 'server_parameters.get("enableTestCommands")' "$f" || { echo "install-pymongo-suite: $f no longer reads enableTestCommands as expected" >&2; exit 1; }
  done
fi
echo "$VENV/bin/python $SUITE"
