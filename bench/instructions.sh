#!/usr/bin/env bash
# Instructions per request of the filter in the host tests' wasmtime host (a stable count,
# unlike CPU time): bench/run.sh's request mix, driven through the floor filter and through
# switchyard (example and large policy, each also with a pseudonym key set) under
# `valgrind --tool=callgrind`.
#
#   bench/instructions.sh [N]        N measured requests per case (default 1000)
#
# How: bench/instructions/drive.rs (linked against the switchyard-host-tests library with
# rustc, no extra workspace member) loads the .wasm into the fake host, configures it, sends
# 200 warm-up requests, then N measured requests. It runs under callgrind with
# --instr-atstart=no and switches instrumentation on/off around the N requests itself
# (Valgrind client requests), so only those are counted. Counts are split into:
#   wasm   instructions executed in code wasmtime compiled (the filter itself, and wasmtime's
#          small trampolines): what the filter costs, independent of how the host was built;
#   host   everything else (the fake host's ABI functions and request bookkeeping, wasmtime's
#          runtime, libc): debug build, as the host tests run; indicative only.
# Prints a Markdown table and writes bench/results/instructions.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
cd "$REPO"
N="${1:-1000}"
say() { printf '[instructions] %s\n' "$*" >&2; }

if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing valgrind (apt-get)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >&2
  else
    say "valgrind not found: install it (Debian/Ubuntu: apt-get install valgrind)"; exit 1
  fi
fi
[ "$(uname -m)" = x86_64 ] || { say "the driver's Valgrind client requests are x86_64 only"; exit 1; }

# rlib_of CRATE: reads `cargo build --message-format=json` on stdin, prints CRATE's .rlib path.
rlib_of() {
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1]:
        print([f for f in m["filenames"] if f.endswith(".rlib")][0])
' "$1"
}

OUT="$REPO/target/bench"
mkdir -p "$OUT" "$HERE/results"
say "building the wasm modules (the filter as shipped: plugin/build.sh, i.e. cargo + wasm-opt -Oz)"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1 >&2
bash plugin/build.sh >&2
bash bench/floor-filter/build.sh
say "building the host-tests library (debug, as its tests use it) and the driver"
RLIB="$(cargo build -p switchyard-host-tests --message-format=json 2>/dev/null | rlib_of switchyard_host_tests)"
[ -n "$RLIB" ] || { say "could not build switchyard-host-tests (run: cargo build -p switchyard-host-tests)"; exit 1; }
rustc --edition 2021 -C opt-level=1 -C debuginfo=1 --crate-type bin --crate-name drive \
  "$HERE/instructions/drive.rs" --extern "switchyard_host_tests=$RLIB" \
  -L "dependency=$(dirname "$RLIB")/deps" -o "$OUT/drive" >&2
cargo run --release -q -p switchyard-policy --example large-policy > "$OUT/large-policy.json"
python3 "$HERE/bench.py" --write-mix "$OUT/mix.tsv"
# The same policies with a pseudonym key, as a deployment that joins exposure per unit sets one
# (settings.pseudonym_key or node metadata): every decision's event then carries a keyed hash.
keyed() {  # keyed POLICY OUT
  python3 -c 'import json, sys
p = json.load(open(sys.argv[1]))
p.setdefault("settings", {})["pseudonym_key"] = "00112233445566778899aabbccddeeff"
json.dump(p, open(sys.argv[2], "w"))' "$1" "$2"
}
keyed "$REPO/examples/support-copilot/policy.json" "$OUT/example-policy-keyed.json"
keyed "$OUT/large-policy.json" "$OUT/large-policy-keyed.json"

WASM_DIR="$REPO/target/wasm32-wasip1/release"
rows=()
run_case() {  # run_case NAME WASM CONFIG
  local name="$1" wasm="$2" config="$3" cg="$OUT/callgrind.$1.out"
  say "callgrind: $name ($N requests)"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$cg" \
    "$OUT/drive" "$wasm" "$config" "$OUT/mix.tsv" "$N" > "$OUT/drive.$name.txt" 2> "$OUT/valgrind.$name.txt" \
    || { say "valgrind failed for $name: see $OUT/valgrind.$name.txt"; tail -20 "$OUT/valgrind.$name.txt" >&2; exit 1; }
  grep -q "^requests $N forwarded" "$OUT/drive.$name.txt" || { say "driver failed: $(cat "$OUT/drive.$name.txt")"; exit 1; }
  rows+=("$(callgrind_annotate --inclusive=no --threshold=100 "$cg" 2>/dev/null | python3 -c '
import re, sys
name, n = sys.argv[1], int(sys.argv[2])
total = jit = 0
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
    if not m:
        continue
    ir, what = int(m.group(1).replace(",", "")), m.group(2)
    if what.startswith("PROGRAM TOTALS"):
        total = ir
    elif what.endswith("[???]"):
        jit += ir
print("%s\t%d\t%d\t%d" % (name, total / n, jit / n, (total - jit) / n))
' "$name" "$N")")
}
run_case floor "$WASM_DIR/switchyard_floor_filter.wasm" -
run_case floor-lean "$WASM_DIR/switchyard_floor_filter_lean.wasm" -
run_case switchyard-example "$WASM_DIR/switchyard_plugin.wasm" "$REPO/examples/support-copilot/policy.json"
run_case switchyard-large "$WASM_DIR/switchyard_plugin.wasm" "$OUT/large-policy.json"
run_case switchyard-example-keyed "$WASM_DIR/switchyard_plugin.wasm" "$OUT/example-policy-keyed.json"
run_case switchyard-large-keyed "$WASM_DIR/switchyard_plugin.wasm" "$OUT/large-policy-keyed.json"

# Native breakdown of the engine calls the filter makes per request (symbols; wasm has none).
say "building switchyard-policy natively with symbols (target/bench/native) and the native driver"
NRLIB="$(CARGO_TARGET_DIR="$OUT/native" CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_STRIP=false \
  CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  cargo build --release -p switchyard-policy --lib --message-format=json 2>/dev/null | rlib_of switchyard_policy)"
[ -n "$NRLIB" ] || { say "could not build switchyard-policy natively"; exit 1; }
rustc --edition 2021 -C opt-level=s -g -C panic=abort --crate-type bin --crate-name native \
  "$HERE/instructions/native.rs" --extern "switchyard_policy=$NRLIB" \
  -L "dependency=$(dirname "$NRLIB")/deps" -o "$OUT/native-drive" >&2
native_rows=()
native_case() {  # native_case NAME POLICY
  local name="$1" cg="$OUT/callgrind.native.$1.out"
  say "callgrind (native engine): $name"
  valgrind --tool=callgrind --toggle-collect='*native_measured*' --callgrind-out-file="$cg" \
    "$OUT/native-drive" "$2" "$OUT/mix.tsv" "$N" > "$OUT/native.$name.txt" 2> "$OUT/valgrind.native.$name.txt" \
    || { say "valgrind failed: see $OUT/valgrind.native.$name.txt"; exit 1; }
  native_rows+=("$(callgrind_annotate --inclusive=yes --threshold=100 "$cg" 2>/dev/null | python3 -c '
import re, sys
name, calls = sys.argv[1], int(sys.argv[2]) + 200
got = {}
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+\S*native::(native_measured|step_\w+) \[", line)
    if m and m.group(2) not in got:
        got[m.group(2)] = int(m.group(1).replace(",", ""))
cols = ["native_measured", "step_evaluate", "step_outcome_json", "step_exposure_event", "step_exposure_headers"]
print("\t".join([name] + [str(got.get(c, 0) // calls) for c in cols]))
' "$name" "$N")")
}
native_case switchyard-example "$REPO/examples/support-copilot/policy.json"
native_case switchyard-large "$OUT/large-policy.json"
native_case switchyard-large-keyed "$OUT/large-policy-keyed.json"

{
  echo "# Instructions per request in the host tests' wasmtime host"
  echo
  echo "- date: $(date -Iseconds); valgrind $(valgrind --version | sed 's/valgrind-//'); $N measured requests per case after 200 warm-up requests (bench/run.sh's request mix: POST /v1/chat/completions, 11 headers incl. cookie)"
  echo "- wasm = instructions in wasmtime-compiled code (the filter, plus wasmtime's trampolines); host = the fake host (debug build) and wasmtime's runtime; total = callgrind Ir ÷ N"
  echo
  echo "| case | wasm instr/req | added over floor (wasm) | host instr/req (debug host) | total instr/req |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  floor_jit=""
  for row in "${rows[@]}"; do
    IFS=$'\t' read -r name total jit host <<<"$row"
    [ -n "$floor_jit" ] || floor_jit="$jit"
    if [ "$name" = floor ]; then added="–"; else added="$(printf '%+d' $((jit - floor_jit)))"; fi
    echo "| $name | $jit | $added | $host | $total |"
  done
  echo
  echo "Native breakdown of the engine calls the filter makes per request (x86-64, release opt-level, no LTO; callgrind Ir per request; the filter additionally copies the headers in and out and makes the host calls):"
  echo
  echo "| policy | all four | evaluate | outcome_json (filter state) | exposure_event (filter state) | exposure_headers |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for row in "${native_rows[@]}"; do
    IFS=$'\t' read -r name all ev oj ee eh <<<"$row"
    echo "| $name | $all | $ev | $oj | $ee | $eh |"
  done
  echo
  echo "- .wasm sizes: switchyard_plugin.wasm $(stat -c %s "$WASM_DIR/switchyard_plugin.wasm") bytes (sha256 $(sha256sum "$WASM_DIR/switchyard_plugin.wasm" | cut -c1-12)…), switchyard_floor_filter.wasm $(stat -c %s "$WASM_DIR/switchyard_floor_filter.wasm") bytes, switchyard_floor_filter_lean.wasm (bench/floor-filter/build.sh) $(stat -c %s "$WASM_DIR/switchyard_floor_filter_lean.wasm") bytes"
} | tee "$HERE/results/instructions.md"
say "callgrind files: $OUT/callgrind.*.out (callgrind_annotate FILE)"
