#!/usr/bin/env bash
# Builds the JavaScript (wasm-bindgen) build of switchyard's policy engine (crate js/,
# package switchyard-js):
#   js/pkg/node/  wasm-bindgen --target nodejs   (require('./js/pkg/node/switchyard_js.js'))
#   js/pkg/web/   wasm-bindgen --target web      (an ES module; playground/ loads it)
# Installs what is missing, so it runs as is on a new machine and is cheap when nothing is:
#   - the wasm32-unknown-unknown target (rustup; seconds)
#   - wasm-bindgen-cli at exactly the version of the wasm-bindgen crate in Cargo.lock
#     (cargo install, compiled from source: about 3 minutes on 2 cores, once)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '==> %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "installing the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# The CLI must match the wasm-bindgen crate exactly, or the generated glue is refused.
version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [[ -z "$version" ]]; then
  say "no wasm-bindgen in Cargo.lock"; exit 1
fi
if ! command -v wasm-bindgen >/dev/null || [[ "$(wasm-bindgen --version)" != "wasm-bindgen $version" ]]; then
  say "installing wasm-bindgen-cli $version (compiles from source, a few minutes)"
  start=$SECONDS
  # --locked pins the CLI's own dependencies; if a pinned one is no longer in the registry
  # index (it happens), fall back to the newest compatible ones.
  cargo install wasm-bindgen-cli --version "$version" --locked \
    || cargo install wasm-bindgen-cli --version "$version"
  say "wasm-bindgen-cli installed in $((SECONDS - start))s"
fi

say "cargo build --release --target wasm32-unknown-unknown -p switchyard-js (target dir ${CARGO_TARGET_DIR:-target}/js-wasm)"
# The workspace release profile strips everything, which drops the target_features section
# wasm-bindgen reads; keep it (debug info is still stripped). The build has its own target
# directory so this profile change never invalidates the filter's release build.
target_dir="${CARGO_TARGET_DIR:-target}/js-wasm"
CARGO_PROFILE_RELEASE_STRIP=debuginfo \
  cargo build --release --target wasm32-unknown-unknown -p switchyard-js --target-dir "$target_dir"

wasm="$target_dir/wasm32-unknown-unknown/release/switchyard_js.wasm"
for t in nodejs web; do
  out=js/pkg/${t%js}
  rm -rf "$out"
  wasm-bindgen --target "$t" --remove-name-section --out-dir "$out" "$wasm"
done
say "built js/pkg/node and js/pkg/web ($(wc -c < js/pkg/web/switchyard_js_bg.wasm) bytes of wasm)"
