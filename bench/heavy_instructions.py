#!/usr/bin/env python3
"""Instructions that cost far more than one cycle, counted per request from callgrind files.

The filter's added work costs more CPU per instruction than the rest of Envoy's (README,
"Targets: not met"), and this machine has no hardware counters to say why. Callgrind counts
how often each instruction ran; this script disassembles every instruction that ran in the
envoy binary and libc (with capstone) and sums the executions of the kinds that take tens of
cycles each: atomic read-modify-writes (`lock` prefix, `xchg` with memory), fences, integer
divisions, system calls, and the serializing or timing instructions (`rdtsc`, `cpuid`,
`wrpkru`, ...). Code generated at run time (the compiled module, V8's stubs) is gone when the
process ends and is not disassembled: its share is in callgrind's own split (`JIT`).

    bench/run.sh --instructions --cases abhj --dump-instr --keep DIR
    envoy/_venv/bin/python bench/heavy_instructions.py DIR --requests 1000

(`run.sh` installs capstone into envoy/_venv when given --dump-instr.)
"""
import argparse
import collections
import mmap
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the cases and the envoy binary's path)

# Valgrind loads a position-independent executable at this address; code it cannot name an
# object for (`???`) is reported at run-time addresses, the rest relative to its object.
VALGRIND_PIE_BASE = 0x108000

KINDS = ["atomic", "fence", "division", "syscall", "serializing"]


def kind(insn):
    """The costly kind an instruction is, or None."""
    mnemonic = insn.mnemonic
    if insn.bytes[0] == 0xF0 or mnemonic.startswith("lock") or (mnemonic == "xchg" and "ptr" in insn.op_str):
        return "atomic"
    if mnemonic in ("mfence", "lfence", "sfence"):
        return "fence"
    if mnemonic in ("div", "idiv"):
        return "division"
    if mnemonic == "syscall":
        return "syscall"
    if mnemonic in ("rdtsc", "rdtscp", "cpuid", "rdpkru", "wrpkru", "xgetbv", "pause"):
        return "serializing"
    return None


def executions(path):
    """{object: {address: times run}} from a callgrind file written with --dump-instr=yes."""
    names, counts = {}, collections.defaultdict(collections.Counter)
    obj, address, call_cost_next = None, 0, False
    with open(path) as f:
        for line in f:
            first = line[0]
            if first.isdigit() or first in "+-*":
                fields = line.split()
                token = fields[0]
                if token == "*":
                    at = address
                elif token[0] in "+-":
                    at = address + int(token, 0)
                else:
                    at = int(token, 0)
                # The cost line after `calls=` is the call's inclusive cost, not this
                # instruction's executions; the line after it continues from the position
                # before it (checked against the binary's instruction boundaries).
                if call_cost_next:
                    call_cost_next = False
                    continue
                address = at
                if len(fields) >= 3:
                    counts[obj][address] += int(fields[2])
            elif line.startswith(("ob=", "cob=")):
                m = re.match(r"c?ob=\((\d+)\)(?: (.*))?", line.strip())
                if m.group(2) is not None:
                    names[m.group(1)] = m.group(2)
                if line.startswith("ob="):
                    obj = names.get(m.group(1), "?")
            elif line.startswith("calls="):
                call_cost_next = True
    return counts


class Image:
    """An ELF file's bytes by virtual address (its LOAD segments)."""

    def __init__(self, path):
        self.file = open(path, "rb")
        self.bytes = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ)
        out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout
        self.segments = [(int(p[2], 16), int(p[5], 16), int(p[1], 16))
                         for p in (line.split() for line in out.splitlines()) if p and p[0] == "LOAD"]

    def at(self, address, n=16):
        for vaddr, size, offset in self.segments:
            if vaddr <= address < vaddr + size:
                start = offset + address - vaddr
                return self.bytes[start:start + n]
        return None


def heavy_counts(counts, envoy):
    """Executions of each costly kind, and the busiest instructions of each."""
    try:
        import capstone
    except ImportError:
        sys.exit("capstone is not installed: envoy/_venv/bin/pip install capstone")
    disassembler = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    images, totals = {}, collections.Counter()
    busiest = collections.defaultdict(collections.Counter)
    for obj, by_address in counts.items():
        if obj == "???":
            path, shift = envoy, VALGRIND_PIE_BASE
        elif obj.startswith("/"):
            path, shift = obj, 0
        else:
            continue
        image = images.get(path) or images.setdefault(path, Image(path))
        for address, n in by_address.items():
            code = image.at(address - shift)
            if not code:
                continue
            for insn in disassembler.disasm(code, address - shift, count=1):
                k = kind(insn)
                if k:
                    totals[k] += n
                    busiest[k][(os.path.basename(path), insn.address, "%s %s" % (insn.mnemonic, insn.op_str))] += n
    return totals, busiest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="callgrind.CASE.out files kept by run.sh --instructions --dump-instr --keep DIR")
    ap.add_argument("--requests", type=int, default=1000, help="measured requests per case")
    ap.add_argument("--top", type=int, default=0, help="also list the N busiest instructions of each kind")
    args = ap.parse_args()
    envoy = os.path.realpath(bench.envoy_binary())
    files = sorted(f for f in os.listdir(args.dir) if re.fullmatch(r"callgrind\.\w\.out", f))
    if not files:
        ap.error("no callgrind.CASE.out files in %s" % args.dir)
    rows = {}
    for name in files:
        case = name.split(".")[1]
        totals, busiest = heavy_counts(executions(os.path.join(args.dir, name)), envoy)
        rows[case] = {k: totals[k] / args.requests for k in KINDS}
        for k in KINDS if args.top else []:
            for (obj, address, text), n in busiest[k].most_common(args.top):
                print("  (%s) %s %s+%#x %s: %.1f per request" % (case, k, obj, address, text, n / args.requests))
    print("| case | what | " + " | ".join(KINDS) + " |")
    print("| --- | --- |" + " ---: |" * len(KINDS))
    for case, row in rows.items():
        print("| %s | %s | %s |" % (case, bench.CASES.get(case, ""), " | ".join("%.1f" % row[k] for k in KINDS)))
    if "a" in rows:
        print("\nAdded over (a):\n")
        print("| case | " + " | ".join(KINDS) + " |")
        print("| --- |" + " ---: |" * len(KINDS))
        for case, row in rows.items():
            if case != "a":
                print("| %s | %s |" % (case, " | ".join("%+.1f" % (row[k] - rows["a"][k]) for k in KINDS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
