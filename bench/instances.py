#!/usr/bin/env python3
"""CPU per request of several front Envoys alive at once (bench/run.sh --instances).

    bench/run.sh --instances [--cases hhhbbb] [--turns N] [--seconds S]
    bench/run.sh --instances --together [--cases aabhj] [--rounds R] [--turns N] [--seconds S]

Starts one front Envoy per letter of --cases (a letter may repeat: `hhhbbb` is three instances
of (h) and three of (b)), all at once, and reads each instance's CPU time per request as
bench.py does.

By default the instances are loaded in turn, S seconds each, for N turns (the order reversed
every other turn). Every instance is measured in the same stretches of time, so a difference
between instances of one case that holds turn after turn belongs to the instance (where its
code and memory landed), not to the moment.

With --together every instance is loaded at the same time, one wrk each, so all of them run
at the moment's machine speed: on a machine whose speed moves by 10-20% from second to
second, each turn's "added over (a)" is then a difference taken at one moment (against the
mean of that turn's (a) instances). --rounds starts new instances R times, to sample the
instance effect as well; the ratio intervals resample rounds. The instances share the two
cores, so every request costs more than when one front Envoy is loaded alone: these figures
compare cases with each other, not with bench.py's.

`instances.py --ratio X_REPORT X Y_REPORT Y` gives the ratio of added CPU of case X in one
--together report to case Y in another (two cases at once each, say), with an interval that
resamples each run's rounds on its own. `instances.py --pooled X Y REPORT...` pools the rounds
of several reports of the same cases into one sample.

Prints the per-turn table and each instance's median; writes bench/results/instances.md
(together.md with --together, or --out).
"""
import argparse
import datetime
import os
import random
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

VERDICT_WORDS = {True: "met", False: "missed", "unresolved": "unresolved"}


def measure_round(labels, args, scripts, clusters, large_text, workdir):
    """Starts an instance per label, warms each up, loads them for args.turns turns; returns
    {label: [µs per request per turn]}."""
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
            if args.together:
                t0 = {label: envoys[label].cpu_ticks() for label in labels}
                started = {label: bench.start_wrk(scripts[label[0]], envoys[label].port, args.seconds,
                                                  args.connections) for label in labels}
                done = {label: bench.finish_wrk(started[label]) for label in labels}
                for label in labels:
                    ticks = envoys[label].cpu_ticks() - t0[label]
                    cpu[label].append(bench.us_per_request(ticks, done[label]["requests"]))
            else:
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
    return cpu


def added_by_turn(rounds, labels):
    """Per round, per case: each turn's CPU per request over the mean of that turn's (a)
    instances (the mean over the case's instances, when it has several)."""
    out = []
    for cpu in rounds:
        turns = len(cpu[labels[0]])
        floor = [statistics.mean(cpu[l][t] for l in labels if l[0] == "a") for t in range(turns)]
        per_case = {}
        for case in sorted({l[0] for l in labels} - {"a"}):
            mine = [l for l in labels if l[0] == case]
            per_case[case] = [statistics.mean(cpu[l][t] for l in mine) - floor[t] for t in range(turns)]
        out.append(per_case)
    return out


def median_ratio(x_rounds, y_rounds):
    """median of x's added CPU over median of y's, each over every turn of the rounds given."""
    my = statistics.median(v for r in y_rounds for v in r)
    return statistics.median(v for r in x_rounds for v in r) / my if my > 0 else None


def bootstrap_interval(x_rounds, y_rounds, paired, level=bench.INTERVAL_LEVEL):
    """A bootstrap interval for median_ratio that resamples whole rounds (a round's turns share
    its instances): the same rounds for x and y when they ran together (`paired`), each run's
    own otherwise."""
    rng = random.Random(20261124)

    def draw(n):
        return [rng.randrange(n) for _ in range(n)]

    samples = []
    for _ in range(bench.BOOTSTRAP_RESAMPLES):
        ix = draw(len(x_rounds))
        iy = ix if paired else draw(len(y_rounds))
        samples.append(median_ratio([x_rounds[i] for i in ix], [y_rounds[i] for i in iy]))
    return bench.central_interval([r for r in samples if r is not None], level)


def ratio_with_interval(added, x, y):
    """(x added)/(y added) of one --together run, with its interval (None under 3 rounds)."""
    xr, yr = [r[x] for r in added], [r[y] for r in added]
    point = median_ratio(xr, yr)
    if point is None or len(added) < 3:
        return point, None
    return point, bootstrap_interval(xr, yr, paired=True)


def read_report(path):
    """The per-turn table of a report this script wrote: (rounds, labels), as measured."""
    rounds, labels = {}, []
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) > 3 and cells[0].isdigit():
                r, label = int(cells[0]), cells[1]
                rounds.setdefault(r, {})[label] = [float(v) for v in cells[3:]]
                if label not in labels:
                    labels.append(label)
    return [rounds[r] for r in sorted(rounds)], labels


def ratio_across_reports(x_report, x, y_report, y):
    """(x added)/(y added) where x and y were measured in different --together runs, each
    against its own turns' (a); the interval resamples each run's rounds on its own."""
    def added(report, case):
        rounds, labels = read_report(report)
        return [r[case] for r in added_by_turn(rounds, labels)]

    xr, yr = added(x_report, x), added(y_report, y)
    return median_ratio(xr, yr), bootstrap_interval(xr, yr, paired=False)


def together_summary(rounds, labels):
    added = added_by_turn(rounds, labels)
    cases = sorted({l[0] for l in labels})
    L = ["", "Medians over every turn of every round (µs per request; added = over the same "
         "turn's (a)):", "", "| case | what | CPU µs/request | added over (a) |", "| --- | --- | ---: | ---: |"]
    for case in cases:
        values = [v for cpu in rounds for l in labels if l[0] == case for v in cpu[l]]
        add = "–" if case == "a" else "+%.1f" % statistics.median(v for r in added for v in r[case])
        L.append("| %s | %s | %.1f | %s |" % (case, bench.CASES[case], statistics.median(values), add))
    L += ["", "| ratio of added CPU | value | 90% interval (rounds resampled) | target |",
          "| --- | ---: | --- | --- |"]
    for x, y, limit, strict, _ in bench.ADDED_RATIOS:
        if x in cases and y in cases and "a" in cases:
            point, iv = ratio_with_interval(added, x, y)
            if point is None:
                continue
            target = "–"
            if limit is not None:
                target = "%s %.2f×: %s" % ("<" if strict else "≤", limit, VERDICT_WORDS[
                    bench.verdict(point, iv, limit, strict)])
            L.append("| (%s)/(%s) | %.2f× | %s | %s |" % (
                x, y, point, "%.2f–%.2f×" % iv if iv else "–", target))
    return L


def compare_main(argv):
    """instances.py --ratio X_REPORT X Y_REPORT Y: the ratio of added CPU across two runs."""
    x_report, x, y_report, y = argv
    point, (lo, hi) = ratio_across_reports(x_report, x, y_report, y)
    print("(%s)/(%s): %.2f× (90%% interval %.2f–%.2f×; %s against %s, rounds of each resampled)"
          % (x, y, point, lo, hi, os.path.basename(x_report), os.path.basename(y_report)))
    return 0


def pooled_main(argv):
    """instances.py --pooled X Y REPORT...: (x added)/(y added) over the rounds of several
    --together runs of the same cases, resampled as one run's (the rounds of each run are
    independent instances)."""
    x, y, reports = argv[0], argv[1], argv[2:]
    rounds, labels = [], None
    for report in reports:
        more, these = read_report(report)
        if labels is not None and these != labels:
            sys.exit("%s has instances %s, not %s" % (report, " ".join(these), " ".join(labels)))
        rounds, labels = rounds + more, these
    point, iv = ratio_with_interval(added_by_turn(rounds, labels), x, y)
    print("(%s)/(%s): %.2f× (90%% interval %s; %d rounds of %s)"
          % (x, y, point, "%.2f–%.2f×" % iv if iv else "–", len(rounds),
             ", ".join(os.path.basename(r) for r in reports)))
    return 0


def main():
    if sys.argv[1:2] == ["--pooled"]:
        if len(sys.argv) < 5:
            sys.exit("usage: instances.py --pooled X Y REPORT...")
        return pooled_main(sys.argv[2:])
    if sys.argv[1:2] == ["--ratio"]:
        if len(sys.argv) != 6:
            sys.exit("usage: instances.py --ratio X_REPORT X Y_REPORT Y")
        return compare_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="hhhbbb")
    ap.add_argument("--turns", type=int, default=15)
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--together", action="store_true",
                    help="load every instance at the same time in each turn (one wrk each)")
    ap.add_argument("--large-policy", required=True)
    ap.add_argument("--out", help="the report (default bench/results/instances.md, or together.md "
                                  "with --together)")
    args = ap.parse_args()
    if args.out is None:
        args.out = os.path.join(bench.HERE, "results", "together.md" if args.together else "instances.md")
    unknown = sorted(set(args.cases) - set(bench.CASES))
    if unknown:
        ap.error("unknown case(s): %s" % ", ".join(unknown))
    if args.together and "a" not in args.cases:
        ap.error("--together measures added CPU against (a): include it in --cases")
    labels = ["%s%d" % (c, i + 1) for i, c in enumerate(args.cases)]

    workdir = tempfile.mkdtemp(prefix="switchyard-instances-")
    try:
        modules = bench.snapshot_modules(workdir)
        large_text, clusters = bench.read_policies(args.large_policy)
        mix = bench.request_mix()
        route_a = bench.cli_clusters(bench.EXAMPLE_POLICY, mix) if "a" in args.cases else None
        scripts = bench.wrk_scripts(workdir, set(args.cases), mix, route_a)
        rounds = []
        for r in range(args.rounds):
            if args.rounds > 1:
                bench.log("round %d of %d" % (r + 1, args.rounds))
            rounds.append(measure_round(labels, args, scripts, clusters, large_text, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    command = "`bench/run.sh --instances%s --cases %s%s --turns %d --seconds %d`" % (
        " --together" if args.together else "", args.cases,
        " --rounds %d" % args.rounds if args.rounds > 1 else "", args.turns, args.seconds)
    L = ["# CPU per request by Envoy instance", "",
         "- %s, %s; switchyard_plugin.wasm %d bytes" % (command, datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                                         modules["switchyard"]["bytes"]),
         "- every instance alive at once, %s (`wrk -t 1 -c %d` each)" % (
             "all loaded at the same time" if args.together
             else "loaded in turn, order reversed every other turn", args.connections)]
    if args.rounds > 1:
        L.append("- %d rounds, new instances each round" % args.rounds)
    header = "| round | instance | median µs/req | " + " | ".join("t%d" % (t + 1) for t in range(args.turns)) + " |"
    L += ["", header, "| ---: | --- | ---: |" + " ---: |" * args.turns]
    for r, cpu in enumerate(rounds):
        for label in labels:
            L.append("| %d | %s | %.1f | %s |" % (r + 1, label, statistics.median(cpu[label]),
                                                 " | ".join("%.1f" % v for v in cpu[label])))
    if args.together:
        L += together_summary(rounds, labels)
    md = "\n".join(L) + "\n"
    with open(args.out, "w") as f:
        f.write(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
