#!/usr/bin/env python3
"""Instructions per request of the whole front Envoy, per case (bench/run.sh --instructions).

CPU time on this 2-core VM moves by 5-10 % between rounds; an instruction count does not (two
runs agree within 0.2 %), so small changes to the filter can be compared. Each case runs the
same front Envoy as bench.py (same bootstrap, same upstream, same request mix) under
`valgrind --tool=callgrind` with instrumentation off; after the warm-up requests it is switched
on with `callgrind_control -i on`, the measured requests are sent one after another over one
keep-alive connection, and it is switched off again. Every thread of the process is counted
(worker, main, V8's background compilers), split by where the instruction ran:

  Envoy   the envoy binary: Envoy itself, its Wasm host (proxy-wasm-cpp-host, V8's C API and
          runtime), LuaJIT's interpreter, and tcmalloc
  JIT     code generated at run time: the V8-compiled Wasm module (or LuaJIT traces)
  libc    libc and the other shared libraries

Instructions are not time: a cache miss costs more than an instruction. The CPU benchmark
(bench.py) stays the measure of the targets; this one says where the difference comes from.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the cases, bootstraps, request mix and Envoy process helper)


def valgrind_wrapper(workdir, out_file, simulate=False, dump_instr=False):
    """A script that runs the real envoy binary under callgrind (bench.Envoy starts it)."""
    path = os.path.join(workdir, "envoy-under-callgrind.sh")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no --smc-check=all-non-file %s%s"
                "--callgrind-out-file=%s %s \"$@\"\n"
                % ("--cache-sim=yes --branch-sim=yes " if simulate else "",
                   "--dump-instr=yes " if dump_instr else "", out_file, bench.envoy_binary()))
    os.chmod(path, 0o755)
    return path


def envoy_text_range(pid, binary):
    """Address range of the envoy binary's mappings: callgrind names some of its code `???`."""
    lo, hi = None, None
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and os.path.realpath(parts[5]) == binary:
                a, b = (int(x, 16) for x in parts[0].split("-"))
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
    return lo, hi


def split_counts(cg_file, text_range):
    """Instructions by place (Envoy, JIT, libc) from callgrind's per-function totals."""
    out = subprocess.run(["callgrind_annotate", "--show=Ir", "--inclusive=no", "--threshold=100", cg_file],
                         capture_output=True, text=True, check=True).stdout
    lo, hi = text_range
    split = {"total": 0, "envoy": 0, "jit": 0, "libc": 0}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        ir, what = int(m.group(1).replace(",", "")), m.group(2)
        if what.startswith("PROGRAM TOTALS"):
            split["total"] = ir
            continue
        if "/envoy]" in what:
            split["envoy"] += ir
            continue
        unknown = re.match(r"\?\?\?:0x([0-9a-f]+) \[\?\?\?\]$", what)
        if unknown:
            addr = int(unknown.group(1), 16)
            split["envoy" if lo is not None and lo <= addr < hi else "jit"] += ir
        else:
            split["libc"] += ir
    return split


# Callgrind's cache and branch-predictor simulation: first-level instruction and data misses,
# last-level misses, mispredicted conditional and indirect branches (models of a generic CPU,
# not this one, and without prefetching: compare cases with them, do not price time with them).
SIMULATED_EVENTS = ("I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw", "Bcm", "Bim")


def simulated_events(cg_file):
    """Per-event totals of a --cache-sim=yes --branch-sim=yes profile: {event: count}."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", cg_file],
                         capture_output=True, text=True, check=True).stdout
    events = re.search(r"^Events shown:\s+(.*)$", out, re.M).group(1).split()
    totals = re.search(r"^(.*)PROGRAM TOTALS", out, re.M).group(1)
    counts = [int(x.replace(",", "")) for x in re.findall(r"([\d,]+)(?: \(\s*[\d.]+%\))?", totals)]
    return dict(zip(events, counts))


def measure(case, bootstrap, workdir, mix, route, warmup, requests, simulate=False, dump_instr=False):
    cg_file = os.path.join(workdir, "callgrind.%s.out" % case)
    real = os.path.realpath(bench.envoy_binary())
    wrapper = valgrind_wrapper(workdir, cg_file, simulate, dump_instr)
    env = bench.Envoy("front-%s" % case, bootstrap, workdir, binary=wrapper).start(timeout=900)
    try:
        sent = 0
        while sent < warmup:
            k = min(len(mix), warmup - sent)
            bench.send_mix(env.port, mix[:k], route=route[:k] if route else None)
            sent += k
        text_range = envoy_text_range(env.proc.pid, real)
        subprocess.run(["callgrind_control", "-i", "on", str(env.proc.pid)], check=True, capture_output=True)
        non_200 = done = 0
        while done < requests:
            k = min(len(mix), requests - done)
            non_200 += bench.send_mix(env.port, mix[:k], route=route[:k] if route else None)
            done += k
        subprocess.run(["callgrind_control", "-i", "off", str(env.proc.pid)], check=True, capture_output=True)
    finally:
        env.stop()
    split = split_counts(cg_file, text_range)
    if simulate:
        split.update({k: v for k, v in simulated_events(cg_file).items() if k in SIMULATED_EVENTS})
    per_request = {k: v / requests for k, v in split.items()}
    per_request["non_200"] = non_200
    return per_request


def report(res):
    r, cases = res["results"], res["cases"]
    L = ["# switchyard Envoy benchmark: instructions per request", ""]
    L.append("- date: %s; Envoy %s under `valgrind --tool=callgrind`, `--concurrency 1`, V8 Wasm runtime; "
             "%d warm-up + %d measured requests of bench.py's mix, sequential, one keep-alive connection"
             % (res["date"], res["envoy"], res["warmup"], res["requests"]))
    L.append("- all threads of the front Envoy; Envoy = the envoy binary (Envoy, proxy-wasm host, V8 runtime, "
             "LuaJIT interpreter, tcmalloc), JIT = run-time generated code (the compiled Wasm module)")
    L.append("")
    L.append("| case | what | instructions/req | added over (a) | Envoy | JIT | libc | non-200 |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in cases:
        c = r[case]
        added = "–" if case == "a" or "a" not in r else "%+.1fk" % ((c["total"] - r["a"]["total"]) / 1000)
        L.append("| %s | %s | %.1fk | %s | %.1fk | %.1fk | %.1fk | %d |" % (
            case, bench.CASES[case], c["total"] / 1000, added, c["envoy"] / 1000, c["jit"] / 1000,
            c["libc"] / 1000, c["non_200"]))
    L.append("")
    if res.get("simulate"):
        L.append("Simulated per request (`--simulate`, callgrind's models: first-level caches of 32 KiB "
                 "for instructions (I1) and data (D1, reads and writes), the last level (LL, all kinds) "
                 "as the host's; mispredicted conditional and indirect branches):")
        L.append("")
        L.append("| case | I1 misses | D1 misses | LL misses | mispredicted branches | I1 added over (a) "
                 "| D1 added over (a) | mispredicted added over (a) |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

        def i1(c):
            return c.get("I1mr", 0)

        def d1(c):
            return c.get("D1mr", 0) + c.get("D1mw", 0)

        def ll(c):
            return c.get("ILmr", 0) + c.get("DLmr", 0) + c.get("DLmw", 0)

        def bm(c):
            return c.get("Bcm", 0) + c.get("Bim", 0)

        base = r.get("a")

        def over_a(c, f):
            return "–" if c is base or not base else "%+.0f" % (f(c) - f(base))

        for case in cases:
            c = r[case]
            L.append("| %s | %.0f | %.0f | %.0f | %.0f | %s | %s | %s |" % (
                case, i1(c), d1(c), ll(c), bm(c), over_a(c, i1), over_a(c, d1), over_a(c, bm)))
        L.append("")
    if "a" in r:
        added = {c: r[c]["total"] - r["a"]["total"] for c in cases if c != "a"}

        def ratio(x, y):
            return "%.2f×" % (added[x] / added[y]) if x in added and y in added and added[y] > 0 else None

        for name, value in [("(c) added / (b) added (target ≤ 1.3)", ratio("c", "b")),
                            ("(d) added / (c) added (target ≤ 1.10)", ratio("d", "c")),
                            ("(c) added / (e) added (target < 1)", ratio("c", "e")),
                            ("(f) added / (b) added", ratio("f", "b")),
                            ("(h) added / (b) added (lean settings)", ratio("h", "b")),
                            ("(i) added / (h) added (both lean)", ratio("i", "h")),
                            ("(j) added / (b) added (lean, request-only module)", ratio("j", "b")),
                            ("(j) added / (h) added (request-only against full module)", ratio("j", "h")),
                            ("(k) added / (j) added (both lean, request-only module)", ratio("k", "j")),
                            ("(g) added / (c) added (policy size alone)", ratio("g", "c")),
                            ("(j) added / (l) added (against the floor built alike)", ratio("j", "l")),
                            ("(h) added / (l) added", ratio("h", "l")),
                            ("(b) added / (l) added (the SDK's unused exports)", ratio("b", "l")),
                            ("(c) added / (z) added (this module against the baseline)", ratio("c", "z")),
                            ("(h) added / (y) added (lean, against the baseline)", ratio("h", "y")),
                            ("(d) added / (x) added (large, against the baseline)", ratio("d", "x"))]:
            if value:
                L.append("- %s: %s" % (name, value))
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="abcdefg")
    ap.add_argument("--requests", type=int, default=1000, help="measured requests per case")
    ap.add_argument("--warmup", type=int, default=500, help="requests before measuring (V8 tiers up)")
    ap.add_argument("--large-policy", required=True)
    ap.add_argument("--floor-config", default="", metavar="CALLS")
    ap.add_argument("--baseline-wasm", metavar="FILE")
    ap.add_argument("--out", default=os.path.join(bench.HERE, "results"))
    ap.add_argument("--name", default="envoy-instructions")
    ap.add_argument("--simulate", action="store_true",
                    help="also simulate the caches and the branch predictor (callgrind --cache-sim=yes "
                         "--branch-sim=yes, slower): misses and mispredictions per request")
    ap.add_argument("--dump-instr", action="store_true",
                    help="count per instruction (callgrind --dump-instr=yes), for bench/heavy_instructions.py "
                         "on the files kept with --keep")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep each case's callgrind output in DIR (callgrind.CASE.out, for callgrind_annotate)")
    args = ap.parse_args()
    cases = [c for c in args.cases if c in bench.CASES]
    bench.use_baseline(ap, cases, args.baseline_wasm)
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        ap.error("valgrind is not installed (bench/run.sh --instructions installs it)")
    bench.FLOOR_CONFIG = args.floor_config
    if args.dump_instr and not args.keep:
        ap.error("--dump-instr needs --keep DIR (bench/heavy_instructions.py reads the kept files)")

    workdir = tempfile.mkdtemp(prefix="switchyard-instr-")
    bench.snapshot_modules(workdir)
    large_text, clusters = bench.read_policies(args.large_policy)
    mix = bench.request_mix()
    route_a = bench.cli_clusters(bench.EXAMPLE_POLICY, mix) if "a" in cases else None

    results = {}
    upstream = bench.Envoy("upstream", bench.upstream_bootstrap(), workdir).start()
    try:
        for case in cases:
            bootstrap = bench.front_bootstrap(case, clusters, upstream.port, large_text)
            results[case] = measure(case, bootstrap, workdir, mix, route_a if case == "a" else None,
                                    args.warmup, args.requests, args.simulate, args.dump_instr)
            bench.log("case %s: %.1fk instructions/request (Envoy %.1fk, JIT %.1fk, libc %.1fk)" % (
                case, results[case]["total"] / 1000, results[case]["envoy"] / 1000,
                results[case]["jit"] / 1000, results[case]["libc"] / 1000))
    finally:
        upstream.stop()
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            for case in cases:
                kept = os.path.join(workdir, "callgrind.%s.out" % case)
                if os.path.exists(kept):
                    shutil.move(kept, os.path.join(args.keep, os.path.basename(kept)))
        shutil.rmtree(workdir, ignore_errors=True)
    res = {
        "date": datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "envoy": bench.machine_info()["envoy"], "cases": cases, "requests": args.requests,
        "warmup": args.warmup, "floor_config": args.floor_config, "simulate": args.simulate,
        "results": results,
    }
    md = report(res)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, args.name + ".md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, args.name + ".json"), "w") as f:
        json.dump(res, f, indent=1)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
