#!/usr/bin/env bash
# Tests the JavaScript build of switchyard's engine and the policy playground, installing what
# a new machine lacks:
#   - wasm32-unknown-unknown target and wasm-bindgen-cli (via js/build.sh; the CLI compiles
#     from source once, about 3 minutes on 2 cores)
#   - Node.js and npm (Debian packages, only if `node` is missing)
#   - Debian's chromium (only if /usr/bin/chromium is missing; about 1 minute)
#   - playwright-core from npm into playground/node_modules (npm ci; about a second)
# then runs the Node tests (node --test js/test/: every golden case through the wasm build, and
# its simulate against the native `switchyard simulate --json`) and the headless-Chromium
# playground test (node --test playground/test/; saves artifacts/playground.png).
# Exits non-zero if anything fails. Never downloads a browser build of its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
timed() {
  local start=$SECONDS
  "$@"
  printf '    (%ss)\n' "$((SECONDS - start))"
}
. tools/apt.sh

step "Node.js"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  timed apt_install nodejs npm
fi
node --version
# playwright-core (playground/package-lock.json) refuses to run on Node.js before 20.
if [[ $(node -p 'process.versions.node.split(".")[0]') -lt 20 ]]; then
  echo "js/test.sh: Node.js $(node --version) is too old: the browser test's playwright-core" \
    "needs Node.js 20 or newer (Debian 12's nodejs package is 18); install Node.js 20+" >&2
  exit 1
fi

step "web and Node builds (js/build.sh via playground/serve.sh --build-only)"
timed bash playground/serve.sh --build-only

step "the native switchyard command (for the simulate comparison)"
timed cargo build -q -p switchyard-policy --bin switchyard
export SWITCHYARD_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/switchyard"

step "Chromium (Debian package)"
if [[ ! -x /usr/bin/chromium ]]; then
  timed apt_install chromium
fi
/usr/bin/chromium --version 2>/dev/null || true

step "playwright-core (npm ci in playground/)"
if [[ ! -f playground/node_modules/playwright-core/package.json ]] \
  || ! grep -q '"version": "1.64.1"' playground/node_modules/playwright-core/package.json; then
  (cd playground && timed npm ci --no-audit --no-fund)
fi

failed=0
step "node --test js/test/"
node --test js/test/ || failed=1

step "node --test playground/test/ (headless Chromium)"
(cd playground && node --test test/) || failed=1

if [[ $failed -ne 0 ]]; then
  step "FAILED"
  exit 1
fi
step "js and playground tests passed (screenshot: artifacts/playground.png)"
