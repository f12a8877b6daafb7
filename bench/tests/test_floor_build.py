"""bench/floor-filter/build.sh: case (b) is the floor filter as the SDK builds it, case (l)
the same filter built as switchyard's request-only module is built. (l) is a fair floor for
(j) only if Envoy enters both modules for the same callbacks, which their exports decide."""
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELEASE = os.path.join(REPO, "target", "wasm32-wasip1", "release")


def exports(path):
    """The names a module exports, listed as the build lists them (tools/wasm-exports.sh)."""
    out = subprocess.run(["bash", "-c", '. tools/wasm-exports.sh && module_exports "$1"', "_", path],
                         cwd=REPO, stdout=subprocess.PIPE, check=True).stdout.decode()
    names = set(out.split())
    assert "memory" in names, (path, out)  # wasm-opt read the module
    return names


def test_the_lean_floor_is_entered_for_the_same_callbacks_as_the_request_only_module():
    subprocess.run(["bash", os.path.join(REPO, "bench", "floor-filter", "build.sh")], check=True)
    sdk = exports(os.path.join(RELEASE, "switchyard_floor_filter.wasm"))
    lean = exports(os.path.join(RELEASE, "switchyard_floor_filter_lean.wasm"))
    request_only = exports(os.path.join(RELEASE, "switchyard_plugin_request_only.wasm"))

    def callbacks(names):
        return {name for name in names if name.startswith("proxy_on_")}

    assert callbacks(lean) == callbacks(request_only), callbacks(lean) ^ callbacks(request_only)
    assert "proxy_on_request_headers" in lean
    assert "proxy_on_response_headers" not in lean
    assert "proxy_on_request_body" not in lean
    # (b) keeps what the SDK exports: Envoy enters it for the body, the response, log and done.
    for name in ("proxy_on_request_body", "proxy_on_response_headers", "proxy_on_log",
                 "proxy_on_done"):
        assert name in sdk, name
