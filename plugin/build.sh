#!/usr/bin/env bash
# Builds the filter as shipped: cargo's release build for wasm32-wasip1, then binaryen's
# wasm-opt -Oz in place (about 14% smaller). Installs the wasm target, and binaryen with apt
# when it is missing and we are root; without wasm-opt the module still works, just larger.
#   plugin/build.sh   → target/wasm32-wasip1/release/switchyard_plugin.wasm
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '[plugin/build] %s\n' "$*" >&2; }

if command -v rustup >/dev/null && ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  say "rustup target add wasm32-wasip1"
  rustup target add wasm32-wasip1 >&2
fi
if ! command -v wasm-opt >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing binaryen (wasm-opt) with apt-get"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen) >&2 || say "binaryen install failed; continuing without wasm-opt"
fi

WASM=target/wasm32-wasip1/release/switchyard_plugin.wasm
STAMP=target/wasm32-wasip1/release/.switchyard_plugin.optimized
cargo build --release --target wasm32-wasip1 -p switchyard-plugin >&2
# The stamp records the size and mtime of the module wasm-opt wrote; any other file there (cargo
# relinked it, whoever ran cargo) gets optimized. Re-optimizing an optimized module is harmless.
identity() { stat -c '%s %.9Y' "$WASM"; }
if command -v wasm-opt >/dev/null && [ "$(cat "$STAMP" 2>/dev/null)" != "$(identity)" ]; then
  before=$(stat -c %s "$WASM")
  wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types \
    "$WASM" -o "$WASM.opt"
  mv "$WASM.opt" "$WASM"
  identity > "$STAMP"
  say "wasm-opt -Oz: $before -> $(stat -c %s "$WASM") bytes"
fi
say "$WASM: $(stat -c %s "$WASM") bytes"
