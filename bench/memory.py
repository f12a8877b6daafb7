#!/usr/bin/env python3
"""The front Envoy's resident memory per case and number of workers (bench/run.sh --memory).

    bench/run.sh --memory [--cases bcdx] [--workers 1,2,4] [--baseline-wasm FILE]

Envoy runs one Wasm VM per worker thread (and one on the main thread), and each VM loads the
policy itself: a VM's linear memory grows to the peak of that load and never shrinks, so a
policy's cost in memory is paid once per worker. For each case and worker count this starts
the front Envoy of bench.py (same bootstrap, no traffic), waits for it to be ready and settle,
and reads VmRSS from /proc/PID/status. The slope over workers is what a policy costs per
worker; (d) against (c) is the large policy's cost. Standard library only.
"""
import argparse
import sys
import tempfile
import time

import bench


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="bcd")
    ap.add_argument("--workers", default="1,2,4", help="comma-separated --concurrency values")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between ready and reading")
    ap.add_argument("--large-policy", required=True)
    ap.add_argument("--baseline-wasm", metavar="FILE")
    args = ap.parse_args()
    cases = [c for c in args.cases if c in bench.CASES]
    bench.use_baseline(ap, cases, args.baseline_wasm)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]

    workdir = tempfile.mkdtemp(prefix="switchyard-memory-")
    bench.snapshot_modules(workdir)
    large_text, clusters = bench.read_policies(args.large_policy)
    rss = {}
    for case in cases:
        for n in workers:
            # No traffic is sent: any port will do for the upstream cluster.
            boot = bench.front_bootstrap(case, clusters, 9, large_text)
            envoy = bench.Envoy("front-%s-%d" % (case, n), boot, workdir, concurrency=n).start()
            try:
                time.sleep(args.settle)
                rss[case, n] = envoy.rss_kib() / 1024.0
            finally:
                envoy.stop()
            bench.log("case %s, %d worker(s): VmRSS %.1f MiB" % (case, n, rss[case, n]))

    lines = ["| case | what | " + " | ".join("%d worker%s" % (n, "" if n == 1 else "s") for n in workers)
             + " | MiB per added worker |",
             "| --- | --- | " + " | ".join("---:" for _ in workers) + " | ---: |"]
    for case in cases:
        per = ((rss[case, workers[-1]] - rss[case, workers[0]]) / (workers[-1] - workers[0])
               if len(workers) > 1 else None)
        lines.append("| %s | %s | %s | %s |" % (
            case, bench.CASES[case], " | ".join("%.1f" % rss[case, n] for n in workers),
            "–" if per is None else "%.1f" % per))
    print("VmRSS (MiB) of the front Envoy, ready, no traffic:\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
