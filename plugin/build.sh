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
. tools/apt.sh
if ! { command -v wasm-opt && command -v wasm-metadce; } >/dev/null; then
  if can_install; then
    say "installing binaryen (wasm-opt, wasm-metadce) with apt-get"
    apt_install binaryen || say "WARNING: binaryen install failed"
  fi
  { command -v wasm-opt && command -v wasm-metadce; } >/dev/null || say "WARNING: no binaryen" \
    "(apt-get install binaryen): the module is built unoptimized, with the SDK's unused" \
    "callbacks still exported; it works, but it is not the module the tests check"
fi

# The Wasm features rustc's wasm32-wasip1 output uses, for binaryen.
FEATURES=(--enable-bulk-memory --enable-sign-ext --enable-mutable-globals
  --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types)

# Callbacks the SDK exports but switchyard does not implement (its defaults just continue).
# Envoy enters the VM only for callbacks a module exports, and every entry costs the host a few
# thousand instructions (bench/README.md, "Instructions in Envoy"): four of these (request and
# response body, log, done) would run on every request. Implementing one of them in the filter
# means taking it off this list; host-tests/tests/filter/exports.rs checks the shipped module.
UNUSED_CALLBACKS="proxy_on_done proxy_on_log proxy_on_request_body proxy_on_request_trailers
  proxy_on_request_metadata proxy_on_response_body proxy_on_response_trailers
  proxy_on_response_metadata proxy_on_new_connection proxy_on_downstream_data
  proxy_on_upstream_data proxy_on_downstream_connection_close proxy_on_upstream_connection_close
  proxy_on_queue_ready proxy_on_foreign_function proxy_on_grpc_close proxy_on_grpc_receive
  proxy_on_grpc_receive_initial_metadata proxy_on_grpc_receive_trailing_metadata"

# Removes UNUSED_CALLBACKS from the module's exports (and the code only they reach) with
# binaryen's wasm-metadce; every other export is kept, so an export a newer SDK adds survives.
strip_unused_callbacks() {
  command -v wasm-metadce >/dev/null || { say "no wasm-metadce: unused callbacks stay exported"; return 0; }
  local unused="$UNUSED_CALLBACKS ${1:-}"
  local graph="$WASM.graph.json"
  wasm-opt --print "${FEATURES[@]}" "$WASM" 2>/dev/null | sed -n 's/^ (export "\([^"]*\)".*/\1/p' \
    | python3 -c '
import json, sys
unused = set(sys.argv[1].split())
keep = [name for name in sys.stdin.read().split() if name not in unused]
if "proxy_on_request_headers" not in keep or "memory" not in keep:
    sys.exit("cannot list the module exports")
graph = [{"name": "outside", "root": True, "reaches": ["e:" + k for k in keep]}]
graph += [{"name": "e:" + k, "export": k} for k in keep]
json.dump(graph, sys.stdout)' "$unused" > "$graph" \
    || { say "unused callbacks stay exported"; rm -f "$graph"; return 0; }
  wasm-metadce "${SYMBOL_FLAGS[@]}" -f "$graph" "${FEATURES[@]}" "$WASM" -o "$WASM.dce" > /dev/null
  mv "$WASM.dce" "$WASM"
  rm -f "$graph"
  say "wasm-metadce: unused SDK callbacks no longer exported"
}

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
    strip_unused_callbacks "${1:-}"
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
