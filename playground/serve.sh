#!/usr/bin/env bash
# The policy playground: builds the engine's web build (js/build.sh), puts it and the example
# policy beside the page (playground/pkg/, not committed) and serves playground/ on
# http://127.0.0.1:PORT/ (default 8080) with python3's http.server.
#   playground/serve.sh [PORT]        build and serve (Ctrl-C stops)
#   playground/serve.sh --build-only  build only (what the browser test uses)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash js/build.sh
rm -rf playground/pkg
mkdir -p playground/pkg
cp js/pkg/web/switchyard_js.js js/pkg/web/switchyard_js_bg.wasm playground/pkg/
cp examples/support-copilot/policy.json playground/pkg/example-policy.json

if [[ "${1:-}" == "--build-only" ]]; then
  exit 0
fi
port=${1:-8080}
echo "switchyard playground: http://127.0.0.1:$port/"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory playground
