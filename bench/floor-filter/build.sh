#!/usr/bin/env bash
# Builds the floor filter twice, for bench/run.sh:
#   target/wasm32-wasip1/release/switchyard_floor_filter.wasm       case (b): as the SDK builds
#       it (cargo's release build), every SDK callback exported;
#   target/wasm32-wasip1/release/switchyard_floor_filter_lean.wasm  case (l): built as
#       switchyard's request-only module is built (tools/wasm-exports.sh's wasm-metadce step,
#       the response callback too, then wasm-opt -Oz), so Envoy enters it only to create the
#       stream's context, for the request headers and to delete the context. The least any
#       proxy-wasm routing filter costs this Envoy; --floor-config's response-side calls
#       (status, code, histogram) do nothing in it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
say() { printf '[floor-filter/build] %s\n' "$*" >&2; }
. tools/wasm-exports.sh
ensure_binaryen

unset CARGO_TARGET_DIR
cargo build --release --target wasm32-wasip1 -p switchyard-floor-filter >&2
DIR=target/wasm32-wasip1/release
LEAN=$DIR/switchyard_floor_filter_lean.wasm
cp "$DIR/switchyard_floor_filter.wasm" "$LEAN.tmp"
strip_unused_callbacks "$LEAN.tmp" proxy_on_response_headers
if command -v wasm-opt >/dev/null; then
  wasm-opt -Oz "${FEATURES[@]}" "$LEAN.tmp" -o "$LEAN.tmp"
fi
mv "$LEAN.tmp" "$LEAN"
say "$LEAN: $(stat -c %s "$LEAN") bytes"
