"""Self instructions per request of each wasm function, from callgrind_annotate's output.

Usage: callgrind_annotate --inclusive=no --threshold=100 FILE | python3 profile_table.py
           PERF_MAP SYMBOL_MAP N [ROWS]

Callgrind sees wasmtime's compiled code as unnamed addresses (`???:0xADDR [???]`); wasmtime's
perf map gives each function's address range and wasm index, and wasm-opt's symbol map
(`INDEX:SYMBOL`) the Rust symbol of each index. Used by bench/profile.sh.
"""

import bisect
import re
import shutil
import subprocess
import sys

LINE = re.compile(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+\?\?\?:0x([0-9a-f]+) \[\?\?\?\]$")
INDEX = re.compile(r"function\[(\d+)\]")


def read_perf_map(path):
    """(start, end, label) per compiled function, sorted by start."""
    ranges = []
    with open(path) as f:
        for line in f:
            start, size, label = line.rstrip("\n").split(" ", 2)
            start = int(start, 16)
            ranges.append((start, start + int(size, 16), label))
    ranges.sort()
    return ranges


def read_symbols(path):
    with open(path) as f:
        return dict(line.rstrip("\n").split(":", 1) for line in f if ":" in line)


def demangle(names):
    """Legacy Rust symbols through c++filt when there is one; the hash suffix dropped."""
    out = list(names)
    if shutil.which("c++filt"):
        done = subprocess.run(
            ["c++filt"], input="\n".join(names), capture_output=True, text=True, check=False
        )
        lines = done.stdout.split("\n")
        if done.returncode == 0 and len(lines) >= len(names):
            out = lines[: len(names)]
    return [re.sub(r"(::h[0-9a-f]{16}|17h[0-9a-f]{16}E)$", "", n) for n in out]


def main():
    perf_map, symbol_map, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rows = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    ranges, symbols = read_perf_map(perf_map), read_symbols(symbol_map)
    starts = [r[0] for r in ranges]
    per_label, total = {}, 0
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        count, addr = int(m.group(1).replace(",", "")), int(m.group(2), 16)
        i = bisect.bisect_right(starts, addr) - 1
        label = ranges[i][2] if i >= 0 and addr < ranges[i][1] else "(outside the perf map)"
        index = INDEX.search(label)
        if index and index.group(1) in symbols:
            label = symbols[index.group(1)]
        per_label[label] = per_label.get(label, 0) + count
        total += count
    top = sorted(per_label.items(), key=lambda kv: -kv[1])[:rows]
    names = demangle([label for label, _ in top])
    print(f"wasm instructions per request: {total / n:,.0f} ({n} requests)\n")
    print("| self instr/req | share | function |")
    print("| ---: | ---: | --- |")
    for (_, count), name in zip(top, names):
        share = 100.0 * count / total if total else 0.0
        print(f"| {count / n:,.0f} | {share:.1f}% | `{name[:110]}` |")


if __name__ == "__main__":
    main()
