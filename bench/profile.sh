#!/usr/bin/env bash
# Where the filter's instructions go: self instructions per request of each function of the
# module, exact (callgrind, not samples), for one policy over bench/run.sh's request mix.
#
#   bench/profile.sh [POLICY] [N]   POLICY defaults to the example policy; N requests (300)
#
# The module is the shipped code with its names kept (plugin/build.sh --symbols). The driver
# of instructions.sh runs it in the host tests' wasmtime host under callgrind, with wasmtime
# writing a perf map (/tmp/perf-PID.map: address, size, wasm function index); the symbol map
# wasm-opt wrote names each index. Functions inlined into another are counted in that one.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
cd "$REPO"
POLICY="${1:-$REPO/examples/support-copilot/policy.json}"
N="${2:-300}"
say() { printf '[profile] %s\n' "$*" >&2; }

OUT="$REPO/target/bench"
if [ ! -x "$OUT/drive" ] || [ ! -f "$OUT/mix.tsv" ]; then
  say "no driver yet: run bench/instructions.sh once (it builds target/bench/drive and mix.tsv)"
  exit 1
fi
bash plugin/build.sh --symbols
WASM="$REPO/target/prof/wasm32-wasip1/release/switchyard_plugin.wasm"
[ -f "$WASM.symbols" ] || { say "no symbol map (is wasm-opt installed?)"; exit 1; }

CG="$OUT/callgrind.profile.out"
SWITCHYARD_WASM_PERFMAP=1 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$CG" \
  "$OUT/drive" "$WASM" "$POLICY" "$OUT/mix.tsv" "$N" > "$OUT/drive.profile.txt" 2> "$OUT/valgrind.profile.txt" \
  || { say "valgrind failed: see $OUT/valgrind.profile.txt"; exit 1; }
PID="$(sed -n 's/^==\([0-9]*\)==.*/\1/p' "$OUT/valgrind.profile.txt" | head -1)"
PERFMAP="/tmp/perf-$PID.map"
[ -f "$PERFMAP" ] || { say "wasmtime wrote no perf map ($PERFMAP)"; exit 1; }

callgrind_annotate --inclusive=no --threshold=100 "$CG" 2>/dev/null \
  | python3 "$HERE/profile_table.py" "$PERFMAP" "$WASM.symbols" "$N"
