"""bench/floor-filter/build.sh: case (b) is the floor filter as the SDK builds it, case (l)
the same filter built as switchyard's request-only module is built. (l) is a fair floor for
(j) only if Envoy enters both modules for the same callbacks, which their exports decide."""
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELEASE = os.path.join(REPO, "target", "wasm32-wasip1", "release")


def leb128(data, pos):
    """An unsigned LEB128 integer at `pos`: (value, position after it)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def function_exports(path):
    """The names of a module's function exports, read from its export section (id 7)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\0asm", path
    pos, names = 8, set()
    while pos < len(data):
        section, pos = data[pos], pos + 1
        size, pos = leb128(data, pos)
        if section == 7:
            count, p = leb128(data, pos)
            for _ in range(count):
                length, p = leb128(data, p)
                name = data[p:p + length].decode()
                kind = data[p + length]
                _, p = leb128(data, p + length + 1)
                if kind == 0:
                    names.add(name)
        pos += size
    return names


def test_leb128_reads_multibyte_values():
    assert leb128(bytes([0xE5, 0x8E, 0x26]), 0) == (624485, 3)
    assert leb128(bytes([0x7F]), 0) == (127, 1)


def test_the_lean_floor_is_entered_for_the_same_callbacks_as_the_request_only_module():
    subprocess.run(["bash", os.path.join(REPO, "bench", "floor-filter", "build.sh")], check=True)
    sdk = function_exports(os.path.join(RELEASE, "switchyard_floor_filter.wasm"))
    lean = function_exports(os.path.join(RELEASE, "switchyard_floor_filter_lean.wasm"))
    request_only = function_exports(os.path.join(RELEASE, "switchyard_plugin_request_only.wasm"))
    def callbacks(exports):
        return {name for name in exports if name.startswith("proxy_on_")}

    assert callbacks(lean) == callbacks(request_only), callbacks(lean) ^ callbacks(request_only)
    assert "proxy_on_request_headers" in lean
    assert "proxy_on_response_headers" not in lean
    assert "proxy_on_request_body" not in lean
    # (b) keeps what the SDK exports: Envoy enters it for the body, the response, log and done.
    for name in ("proxy_on_request_body", "proxy_on_response_headers", "proxy_on_log",
                 "proxy_on_done"):
        assert name in sdk, name
