#!/usr/bin/env python3
"""switchyard demo: real Envoy + the switchyard filter + mock model upstreams.

    ./demo.sh [--keep-running] [--requests N] [--policy FILE]

Starts the mock upstreams and Envoy (two workers) with the policy (default
examples/support-copilot/policy.json), sends realistic support-product traffic through Envoy,
and prints what happened, as seen from outside the filter: which variation/reason each flag
decided (from the exposure header the upstream received, or the body of a local reply) and
which upstream received each request. Then it stops everything, unless --keep-running.
"""
import argparse
import collections
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import traffic  # noqa: E402
from genconfig import policy_clusters  # noqa: E402
from sfv import parse_list  # noqa: E402


def table(headers, rows, out=sys.stdout):
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths)) + "\n" + line + "\n")
    for r in rows:
        out.write("  ".join(c.ljust(w) if i < len(r) - 1 or not c.isdigit() else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths))).rstrip() + "\n")
    out.write("\n")


def send(envoy, reqs, threads=4):
    out = [None] * len(reqs)

    def run(idx):
        c = envoy.client()
        for i in idx:
            out[i] = c.send(reqs[i])
        c.close()

    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(run, [range(i, len(reqs), threads) for i in range(threads)]))
    return out


def reject_decision(body):
    """(flag, reason) from a local reply body, wherever the filter put them."""
    flag = reason = None
    stack = [body]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            flag = flag or (o.get("flag") if isinstance(o.get("flag"), str) else None)
            reason = reason or (o.get("reason") if isinstance(o.get("reason"), str) else None)
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return flag, reason


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep-running", action="store_true",
                    help="leave mocks and Envoy up and print curl commands (Ctrl-C stops)")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--policy", default=harness.EXAMPLE_POLICY)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--non-ai-clusters", default="support_rules",
                    help="clusters that are not AI models (for the per-tenant 'to AI' column)")
    args = ap.parse_args(argv)

    for path, what in ((harness.WASM, "filter"), ):
        if not os.path.isfile(path):
            sys.exit("demo: %s not built (%s); run envoy/setup.sh" % (what, path))
    with open(args.policy, encoding="utf-8") as f:
        policy_text = f.read()
    policy = json.loads(policy_text)
    run_dir = os.path.join(HERE, "_run", "demo")
    os.makedirs(run_dir, exist_ok=True)
    for name in os.listdir(run_dir):
        os.remove(os.path.join(run_dir, name))

    t0 = time.time()
    mocks = harness.Mocks(policy_clusters(policy_text), workdir=run_dir).start()
    envoy = harness.Envoy(policy_text, mocks, workdir=run_dir, concurrency=args.concurrency,
                          name="demo")
    try:
        envoy.start()
        version = re.search(r"/(\d+\.\d+\.\d+)/", subprocess.run(
            [harness.envoy_binary(), "--version"], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT).stdout.decode())
        print("switchyard demo: Envoy %s with %s (policy %s), %d workers, listening on :%d"
              % (version.group(1) if version else "?",
                 os.path.relpath(harness.WASM, harness.REPO),
                 policy.get("version"), args.concurrency, envoy.port))
        print("mock upstreams: " + ", ".join("%s=:%d" % kv for kv in sorted(mocks.ports.items())))
        reqs = traffic.realistic(args.requests, seed=args.seed)
        since = mocks.seq()
        t1 = time.time()
        responses = send(envoy, reqs)
        elapsed = time.time() - t1
        seen = mocks.by_request_id(since)
        print("sent %d requests in %.2fs (%.0f req/s over 4 keep-alive connections)\n"
              % (len(reqs), elapsed, len(reqs) / elapsed))

        decisions = collections.Counter()       # (flag, variation, reason) -> requests
        upstreams = collections.defaultdict(collections.Counter)
        tenants = collections.defaultdict(collections.Counter)
        statuses = collections.Counter()
        consent = collections.Counter()
        for req, resp in zip(reqs, responses):
            tenant = req["headers"].get("x-tenant-id", "-")
            statuses[resp.status] += 1
            entries = seen.get(req["headers"]["x-request-id"], [])
            where = entries[0]["cluster"] if entries else "local %d" % resp.status
            tenants[tenant][where] += 1
            if entries:
                expo = entries[0]["headers"].get("x-switchyard-exposure")
                items = parse_list(expo) if expo else []
                for flag, params in items:
                    key = (str(flag), str(params.get("variation", "-")), str(params.get("reason")))
                    decisions[key] += 1
                    upstreams[key][where] += 1
                    if key[2] == "CONSENT_DENIED":
                        consent[(key[0], tenant, "served " + key[1])] += 1
                if not items:
                    decisions[("(no flag)", "-", "-")] += 1
                    upstreams[("(no flag)", "-", "-")][where] += 1
            else:
                flag, reason = reject_decision(resp.json)
                key = (flag or "?", "(reject)", reason or "?")
                decisions[key] += 1
                upstreams[key][where] += 1
                consent[(flag or "?", tenant, "rejected %d" % resp.status)] += 1

        print("Decisions (flag x variation x reason), and which upstream received the requests")
        order = {f.get("key"): i for i, f in enumerate(policy.get("flags", []))}
        rows = []
        for key in sorted(decisions, key=lambda k: (order.get(k[0], 99), k[1], k[2])):
            ups = ", ".join("%s %d" % kv for kv in upstreams[key].most_common())
            rows.append([key[0], key[1], key[2], decisions[key], ups])
        table(["flag", "variation", "reason", "requests", "received by"], rows)

        print("Per tenant")
        ai = set(policy_clusters(policy_text)) - set(args.non_ai_clusters.split(","))
        rows = []
        for tenant in sorted(tenants):
            c = tenants[tenant]
            rows.append([tenant, sum(c.values()), sum(n for k, n in c.items() if k in ai),
                         ", ".join("%s %d" % kv for kv in c.most_common())])
        table(["tenant", "requests", "to AI", "where"], rows)

        print("Consent denials")
        rows = [[f, t, what, n] for (f, t, what), n in sorted(consent.items())]
        table(["flag", "tenant", "outcome", "requests"], rows or [["-", "-", "none", 0]])

        counts = mocks.counts()
        print("Upstream totals: " + ", ".join("%s %d" % kv for kv in sorted(counts.items())))
        print("Responses: " + ", ".join("%s %d" % kv for kv in sorted(statuses.items())))
        log = envoy.access_log(wait_for=len(reqs))
        with_state = sum(1 for l in log if l.get("exposure"))
        print("Access log: %d lines, %d with exposure filter state (%s)"
              % (len(log), with_state, os.path.relpath(envoy.access_log_path, harness.REPO)))
        metrics = [(s, v) for s, v in harness.prometheus_samples(
            envoy.settled_prometheus(), "switchyard_decisions") if v]
        print("Prometheus: %d non-zero switchyard_decisions series, e.g. %s"
              % (len(metrics), next(("switchyard_decisions{%s} %d" % (
                  ",".join('%s="%s"' % kv for kv in sorted(s.items())), v)
                  for s, v in metrics), "none")))
        ex = next((l for l in log if l.get("exposure")), None)
        if ex:
            print("Sample access log line: " + json.dumps(ex))
        print("\ndone in %.1fs" % (time.time() - t0))

        if args.keep_running:
            p, a = envoy.port, envoy.admin_port
            print("""
Still running (Ctrl-C to stop). Try:
  curl -si localhost:%(p)d/v1/chat/completions -H 'x-tenant-id: acme' -H 'x-conversation-id: c1' -d '{"messages":[{"role":"user","content":"hi"}]}'
  curl -si localhost:%(p)d/v1/chat/completions -H 'x-tenant-id: globex' -H 'x-plan: pro' -H 'x-conversation-id: c2' -d '{}'
  curl -si localhost:%(p)d/v1/chat/completions -H 'x-tenant-id: hooli' -H 'x-plan: enterprise' -H 'x-conversation-id: c3' -d '{}'
  curl -si localhost:%(p)d/v1/agent -H 'x-tenant-id: initech' -H 'x-user-id: u1' -d '{}'
  curl -si localhost:%(p)d/v1/agent -H 'x-tenant-id: acme' -H 'x-user-id: u1' -d '{}'        # 403, consent
  curl -si localhost:%(p)d/v1/chat/completions -H 'x-switchyard-cluster: agent_model' -d '{}'  # spoof: ignored
  curl -s localhost:%(a)d/stats/prometheus | grep switchyard_
  tail -f %(log)s
  mock upstream log: curl -s localhost:%(c)d/__mock/counts
""" % {"p": p, "a": a, "c": mocks.control, "log": envoy.access_log_path})
            try:
                while envoy.running:
                    time.sleep(1)
                print("envoy exited")
            except KeyboardInterrupt:
                print("\nstopping")
    finally:
        envoy.stop()
        mocks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
