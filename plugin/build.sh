#!/usr/bin/env bash
# Builds the filter as shipped: cargo's release build for wasm32-wasip1, then binaryen's
# wasm-metadce (drops the SDK callbacks switchyard does not implement, below) and wasm-opt -Oz
# in place (about 14% smaller). Installs the wasm target, and binaryen with apt (as root, or
# through sudo) when it is missing; without binaryen the module still works, just larger.
#   plugin/build.sh   → target/wasm32-wasip1/release/switchyard_plugin.wasm, and beside it
#       switchyard_plugin_request_only.wasm: built with the `request-only` feature (in its own
#       target directory, target/request-only, so the two builds do not recompile each other)
#       and without the response callback, so Envoy enters the VM once less per request; it
#       refuses policies whose settings need the response (README, "The request-only module")
#   plugin/build.sh --symbols   → the same code, for profiling (bench/profile.sh), in
#       target/prof/wasm32-wasip1/release/: switchyard_plugin.wasm keeps its name section and
#       switchyard_plugin.wasm.symbols maps function index → symbol after wasm-opt. It is built
#       with strip = "debuginfo": strip = false (symbols kept for the linker) gave a different
#       module that ran 25% more instructions per request with the large policy, so its profile
#       would mislead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '[plugin/build] %s\n' "$*" >&2; }

if command -v rustup >/dev/null && ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  say "rustup target add wasm32-wasip1"
  rustup target add wasm32-wasip1 >&2
fi
. tools/wasm-exports.sh
ensure_binaryen

# Everything that loads the module (Envoy configurations, the Envoy suite's harness, the
# examples) reads it from ./target, so a CARGO_TARGET_DIR from the environment is not followed.
unset CARGO_TARGET_DIR
TARGET_DIR=target
SYMBOL_FLAGS=()
if [ "${1:-}" = --symbols ]; then
  TARGET_DIR=target/prof
  export CARGO_TARGET_DIR=$TARGET_DIR CARGO_PROFILE_RELEASE_STRIP=debuginfo
  # -g keeps the names through wasm-metadce; the symbol map records them after wasm-opt.
  SYMBOL_FLAGS=(-g)
fi
# optimize [EXTRA_UNUSED]: wasm-metadce and wasm-opt -Oz on $WASM, in place, once per module
# cargo wrote. The stamp records the size and mtime of the module wasm-opt wrote; any other file
# there (cargo relinked it, whoever ran cargo) gets optimized. Re-optimizing an optimized module
# is harmless.
optimize() {
  local stamp before
  stamp="$(dirname "$WASM")/.$(basename "$WASM" .wasm).optimized"
  if command -v wasm-opt >/dev/null && [ "$(cat "$stamp" 2>/dev/null)" != "$(identity)" ]; then
    before=$(stat -c %s "$WASM")
    strip_unused_callbacks "$WASM" ${1:-}
    if [ ${#SYMBOL_FLAGS[@]} -gt 0 ]; then
      wasm-opt -Oz --symbolmap="$WASM.symbols" "${FEATURES[@]}" "$WASM" -o "$WASM.opt"
    else
      wasm-opt -Oz "${FEATURES[@]}" "$WASM" -o "$WASM.opt"
    fi
    mv "$WASM.opt" "$WASM"
    identity > "$stamp"
    say "wasm-opt -Oz: $before -> $(stat -c %s "$WASM") bytes"
  fi
  say "$WASM: $(stat -c %s "$WASM") bytes"
}
identity() { stat -c '%s %.9Y' "$WASM"; }

WASM=$TARGET_DIR/wasm32-wasip1/release/switchyard_plugin.wasm
cargo build --release --target wasm32-wasip1 -p switchyard-plugin >&2
optimize

# The request-only module (not for profiling builds). Its own target directory keeps cargo
# from recompiling the filter each time the feature set changes; the result is copied beside
# the full module, where configurations look for both.
if [ ${#SYMBOL_FLAGS[@]} -eq 0 ]; then
  FULL=$WASM
  WASM=target/request-only/wasm32-wasip1/release/switchyard_plugin.wasm
  CARGO_TARGET_DIR=target/request-only \
    cargo build --release --target wasm32-wasip1 -p switchyard-plugin --features request-only >&2
  optimize proxy_on_response_headers
  cp -p "$WASM" "$(dirname "$FULL")/switchyard_plugin_request_only.wasm"
  # Cargo's dep-info, so the host tests can tell a stale copy (host-tests/src/lib.rs).
  cp -p "${WASM%.wasm}.d" "$(dirname "$FULL")/switchyard_plugin_request_only.d"
fi
