#!/usr/bin/env bash
# switchyard demo: real Envoy, the switchyard wasm filter, mock model upstreams.
#   ./demo.sh                 set up (envoy/setup.sh), send a few hundred requests, print a summary
#   ./demo.sh --keep-running  ... and leave it running, with curl commands to try
#   ./demo.sh --help          more options (envoy/demo.py)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
unset CARGO_TARGET_DIR   # the module and the Envoy configurations live under ./target
if [ "${1:-}" != "--help" ] && [ "${1:-}" != "-h" ]; then
  envoy/setup.sh
fi
PY=envoy/_venv/bin/python
[ -x "$PY" ] || PY=python3   # --help before the first setup
exec "$PY" envoy/demo.py "$@"
