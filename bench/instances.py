#!/usr/bin/env python3
"""How much of the CPU-per-request spread belongs to the Envoy instance (bench/run.sh --instances).

    bench/run.sh --instances [--cases hhhbbb] [--turns N] [--seconds S]

Starts one front Envoy per letter of --cases (a letter may repeat: `hhhbbb` is three instances
of (h) and three of (b)), all at once, then loads them in turn, S seconds each, for N turns
(the order reversed every other turn), reading each instance's CPU time per request as
bench.py does. Every instance is measured in the same stretches of time, so a difference
between instances of one case that holds turn after turn belongs to the instance (where its
code and memory landed), not to the moment. Prints the per-turn table and each instance's
median; writes bench/results/instances.md.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="hhhbbb")
    ap.add_argument("--turns", type=int, default=15)
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--large-policy", required=True)
    ap.add_argument("--out", default=os.path.join(bench.HERE, "results", "instances.md"))
    args = ap.parse_args()
    unknown = sorted(set(args.cases) - set(bench.CASES))
    if unknown:
        ap.error("unknown case(s): %s" % ", ".join(unknown))
    labels = ["%s%d" % (c, i + 1) for i, c in enumerate(args.cases)]

    workdir = tempfile.mkdtemp(prefix="switchyard-instances-")
    modules = bench.snapshot_modules(workdir)
    large_text, clusters = bench.read_policies(args.large_policy)
    mix = bench.request_mix()
    route_a = bench.cli_clusters(bench.EXAMPLE_POLICY, mix) if "a" in args.cases else None
    scripts = bench.wrk_scripts(workdir, set(args.cases), mix, route_a)

    cpu = {label: [] for label in labels}
    envoys = {}
    upstream = bench.Envoy("upstream", bench.upstream_bootstrap(), workdir).start()
    try:
        for label in labels:
            case = label[0]
            envoys[label] = bench.Envoy("front-%s" % label,
                                        bench.front_bootstrap(case, clusters, upstream.port, large_text),
                                        workdir).start()
            bench.run_wrk(scripts[case], envoys[label].port, 2, args.connections)  # warm-up
        for turn in range(args.turns):
            for label in (labels if turn % 2 == 0 else labels[::-1]):
                env = envoys[label]
                t0 = env.cpu_ticks()
                w = bench.run_wrk(scripts[label[0]], env.port, args.seconds, args.connections)
                cpu[label].append(bench.us_per_request(env.cpu_ticks() - t0, w["requests"]))
            bench.log("turn %d: %s" % (turn + 1, " ".join("%s %.1f" % (k, v[-1]) for k, v in cpu.items())))
    finally:
        for env in envoys.values():
            env.stop()
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    L = ["# CPU per request by Envoy instance", "",
         "- `bench/run.sh --instances --cases %s --turns %d --seconds %d`; switchyard_plugin.wasm %d bytes"
         % (args.cases, args.turns, args.seconds, modules["switchyard"]["bytes"]),
         "- every instance alive at once, loaded in turn (`wrk -t 1 -c %d`), order reversed every other turn"
         % args.connections, "",
         "| instance | median µs/req | " + " | ".join("t%d" % (t + 1) for t in range(args.turns)) + " |",
         "| --- | ---: |" + " ---: |" * args.turns]
    for label in labels:
        L.append("| %s | %.1f | %s |" % (label, statistics.median(cpu[label]),
                                        " | ".join("%.1f" % v for v in cpu[label])))
    md = "\n".join(L) + "\n"
    with open(args.out, "w") as f:
        f.write(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
