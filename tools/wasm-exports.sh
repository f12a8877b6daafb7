# Sourced by the scripts that build a proxy-wasm module as switchyard ships it
# (plugin/build.sh, bench/floor-filter/build.sh): binaryen, the callbacks a module need not
# export, and the wasm-metadce step that stops exporting them. Needs `say` defined.
#
#   ensure_binaryen                 installs binaryen with apt when missing (warns otherwise)
#   module_exports WASM             prints the names WASM exports, one a line (needs wasm-opt)
#   strip_unused_callbacks WASM [EXTRA...]
#                                   stops exporting UNUSED_CALLBACKS and EXTRA from WASM, in place
#
# SYMBOL_FLAGS (an array, optional) is passed to wasm-metadce (-g keeps the names).

. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

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

ensure_binaryen() {
  { command -v wasm-opt && command -v wasm-metadce; } >/dev/null && return 0
  if can_install; then
    say "installing binaryen (wasm-opt, wasm-metadce) with apt-get"
    apt_install binaryen || say "WARNING: binaryen install failed"
  fi
  { command -v wasm-opt && command -v wasm-metadce; } >/dev/null || say "WARNING: no binaryen" \
    "(apt-get install binaryen): the module is built unoptimized, with the SDK's unused" \
    "callbacks still exported; it works, but it is not the module the tests check"
}

module_exports() {
  wasm-opt --print "${FEATURES[@]}" "$1" 2>/dev/null | sed -n 's/^ (export "\([^"]*\)".*/\1/p'
}

# Removes UNUSED_CALLBACKS (and EXTRA) from the module's exports, and the code only they reach,
# with binaryen's wasm-metadce; every other export is kept, so an export a newer SDK adds
# survives.
strip_unused_callbacks() {
  local wasm="$1"
  shift
  command -v wasm-metadce >/dev/null || { say "no wasm-metadce: unused callbacks stay exported"; return 0; }
  local unused="$UNUSED_CALLBACKS $*"
  local graph="$wasm.graph.json"
  module_exports "$wasm" | python3 -c '
import json, sys
unused = set(sys.argv[1].split())
keep = [name for name in sys.stdin.read().split() if name not in unused]
if "proxy_on_request_headers" not in keep or "memory" not in keep:
    sys.exit("cannot list the module exports")
graph = [{"name": "outside", "root": True, "reaches": ["e:" + k for k in keep]}]
graph += [{"name": "e:" + k, "export": k} for k in keep]
json.dump(graph, sys.stdout)' "$unused" > "$graph" \
    || { say "unused callbacks stay exported"; rm -f "$graph"; return 0; }
  wasm-metadce ${SYMBOL_FLAGS[@]+"${SYMBOL_FLAGS[@]}"} -f "$graph" "${FEATURES[@]}" "$wasm" \
    -o "$wasm.dce" > /dev/null
  mv "$wasm.dce" "$wasm"
  rm -f "$graph"
  say "wasm-metadce: unused SDK callbacks no longer exported"
}
