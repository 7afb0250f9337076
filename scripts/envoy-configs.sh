#!/usr/bin/env bash
# Regenerates the Envoy configurations shipped in envoy/ (test/envoy-configs.test.ts checks
# that they match this output and that Envoy accepts them).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${1:-envoy}"
gen() { local out="$1"; shift; node dist/filter/main.js envoy-config "$@" > "$OUT/$out"; }
gen ingress-ext-proc.yaml --mode ext_proc --listen main=127.0.0.1:27017 --filter-grpc 127.0.0.1:50051 --filter-admin 127.0.0.1:9000
gen sidecar-tcp-proxy.yaml --mode sidecar --listen main=127.0.0.1:27017 --filter-tcp 127.0.0.1:27016 --filter-admin 127.0.0.1:9000
gen egress.yaml --mode none --egress 127.0.0.1:27100 --max-connections-per-member 100
gen ingress-and-egress.yaml --mode ext_proc --listen main=127.0.0.1:27017 --filter-grpc 127.0.0.1:50051 --filter-admin 127.0.0.1:9000 --egress 127.0.0.1:27100
gen compose.yaml --mode ext_proc --listen main=0.0.0.0:27017 --filter-grpc unix:/run/mongoplex/ext-proc.sock --egress 0.0.0.0:27100 --admin 0.0.0.0:9901 --access-log
