#!/usr/bin/env python3
"""What a consent change costs the traffic (bench/run.sh --swap).

    bench/run.sh --swap [--cases dc] [--baseline-wasm FILE] [--rounds 3] [--changes 5]

With a `consent_source`, every worker merges each new consent document into its policy and
checks the result whole before it swaps it in, and its requests wait meanwhile: with the large
policy (10,000 consent records) that is tens of milliseconds per change, on every worker.

For each case this starts the front Envoy of bench.py (one worker) with the case's policy plus
a `consent_source` on a local policy server (envoy/policy_server.py, 500 ms interval), then
sends requests one after another on one connection for a few seconds without changes, and then
while the consent document changes `--changes` times (one more opt-out each time, 1.5 s apart).
A request that arrives while the worker swaps waits for it, so the longest request after a
change is the worker's stall plus an ordinary request. Reported per case, as medians over
rounds: the longest request without changes, the longest request after each change (median and
largest over all changes) and p50/p99. Cases (x) and (d) run the same policy, so with
`--baseline-wasm` the two modules are compared side by side, rounds interleaved. Standard
library only.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time

import bench

sys.path.insert(0, os.path.join(bench.REPO, "envoy"))
from harness import PolicyServer  # noqa: E402  (the Envoy suite's, standard library only)

SERVER_CLUSTER = "switchyard_policy_server"
INTERVAL_MS = 500
CHANGE_EVERY_S = 1.5
QUIET_S = 3.0


def with_consent_source(policy_text):
    doc = json.loads(policy_text)
    doc["consent_source"] = {"cluster": SERVER_CLUSTER, "path": "/consent.json",
                             "interval_ms": INTERVAL_MS, "timeout_ms": INTERVAL_MS - 100}
    return doc


def consent_document(tenants, extra):
    """The policy's own records plus `extra` more opt-outs: each change adds one."""
    records = dict(tenants)
    for i in range(extra):
        records["swap-bench-%d" % i] = {"support_copilot": {
            "state": "opt_out", "actor": "bench@example", "at": "2026-11-24T10:00:00Z"}}
    return json.dumps({"tenants": records})


def front_bootstrap(case, doc, clusters, upstream_port, server_port):
    """bench.py's front Envoy for `case`, its policy taking consent from the policy server."""
    module = bench.BASELINE_WASM if case == "x" else bench.SWITCHYARD_WASM
    filters = [bench.wasm_filter("switchyard", module, json.dumps(doc)), bench.ROUTER]
    return bench.http_bootstrap(
        [bench.http_listener("ingress-" + case, bench.FRONT_VIRTUAL_HOST, filters)],
        clusters=(bench.front_clusters(clusters, upstream_port)
                  + bench.front_clusters([SERVER_CLUSTER], server_port)),
        node={"id": "bench-swap-%s" % case, "cluster": "bench"})


def timed_requests(port, mix, seconds):
    """Requests one after another for `seconds`: [(start, latency)] in seconds."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    end = time.monotonic() + seconds
    i = 0
    try:
        while time.monotonic() < end:
            headers = dict(mix[i % len(mix)], host=bench.HOST)
            t = time.monotonic()
            conn.request("POST", bench.PATH, body=bench.REQUEST_BODY, headers=headers)
            resp = conn.getresponse()
            resp.read()
            out.append((t, time.monotonic() - t))
            i += 1
    finally:
        conn.close()
    return out


def run_case(case, doc, tenants, clusters, upstream_port, mix, changes, workdir):
    server = PolicyServer(consent=consent_document(tenants, 0), workdir=workdir).start()
    try:
        boot = front_bootstrap(case, doc, clusters, upstream_port, server.port)
        front = bench.Envoy("front-swap-%s" % case, boot, workdir).start()
        try:
            time.sleep(3 * INTERVAL_MS / 1000)  # the first consent document is in
            timed_requests(front.port, mix, 0.5)  # warm up
            quiet = timed_requests(front.port, mix, QUIET_S)
            stalls = []
            for n in range(1, changes + 1):
                server.set_consent(consent_document(tenants, n))
                window = timed_requests(front.port, mix, CHANGE_EVERY_S)
                stalls.append(max(lat for _, lat in window))
        finally:
            front.stop()
    finally:
        server.stop()
    lat = sorted(l for _, l in quiet)
    return {"quiet_max_ms": lat[-1] * 1000, "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000, "requests": len(quiet),
            "change_max_ms": [s * 1000 for s in stalls]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="d", help="d (large policy), c (example policy), x (as d, "
                    "--baseline-wasm)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--changes", type=int, default=5, help="consent changes per round")
    ap.add_argument("--large-policy", required=True)
    ap.add_argument("--baseline-wasm", metavar="FILE")
    args = ap.parse_args()
    cases = [c for c in args.cases if c in "dcx"]
    if args.baseline_wasm and "x" not in cases:
        cases.append("x")
    bench.use_baseline(ap, cases, args.baseline_wasm)

    workdir = tempfile.mkdtemp(prefix="switchyard-swap-")
    bench.snapshot_modules(workdir)
    large_text, clusters = bench.read_policies(args.large_policy)
    with open(bench.EXAMPLE_POLICY) as f:
        example_text = f.read()
    docs = {c: with_consent_source(example_text if c == "c" else large_text) for c in cases}
    mix = bench.request_mix(200)
    upstream = bench.Envoy("upstream", bench.upstream_bootstrap(), workdir).start()
    results = {c: [] for c in cases}
    try:
        for r in range(args.rounds):
            for case in cases:
                doc = docs[case]
                res = run_case(case, doc, doc["consent"]["tenants"], clusters, upstream.port,
                               mix, args.changes, workdir)
                results[case].append(res)
                bench.log("round %d, case %s: quiet max %.1f ms, after a change %s ms" % (
                    r + 1, case, res["quiet_max_ms"],
                    ", ".join("%.1f" % s for s in res["change_max_ms"])))
    finally:
        upstream.stop()

    med = statistics.median
    lines = ["| case | what | p50 ms | p99 ms | longest, no change, ms | longest after a change, "
             "median ms | largest ms |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for case in cases:
        runs = results[case]
        after = [s for run in runs for s in run["change_max_ms"]]
        what = {"c": "example policy", "d": "large policy (10,000 consent records)",
                "x": "as (d), baseline module"}[case]
        lines.append("| %s | %s | %.2f | %.2f | %.1f | %.1f | %.1f |" % (
            case, what, med(r["p50_ms"] for r in runs), med(r["p99_ms"] for r in runs),
            med(r["quiet_max_ms"] for r in runs), med(after), max(after)))
    print("One front Envoy worker, requests one after another on one connection; %d rounds, "
          "%d consent changes each (consent_source, %d ms interval):\n"
          % (args.rounds, args.changes, INTERVAL_MS))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
