"""Exposure evidence through real Envoy: one event line per decided request in the event log
(the filter's filter state, written by an access log with a CEL filter), completed with what
actually ran; no raw unit or tenant ids unless the policy opts in; Prometheus counts that match
the requests sent."""

import json
import os
import re
import time

import pytest

import harness
import traffic
from conftest import load_example, send_all, write_policy

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def evidence_envoy(artifacts, mocks, workdir):
    policy = load_example()
    policy["settings"] = {"pseudonym_key": KEY, "fallback_header": "x-model-fallback"}
    path = write_policy(workdir, "evidence-policy.json", policy)
    e = harness.Envoy(path, mocks, workdir=workdir, concurrency=2, name="evidence")
    e.start()
    yield e, path
    e.stop()


def read_events(envoy, want, timeout=10):
    """Event lines from the event log, waiting until at least `want` are there."""
    path = envoy.access_log_path + ".events"
    deadline = time.time() + timeout
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f if line.strip()]
        except OSError:
            lines = []
        if len(lines) >= want or time.time() > deadline:
            return lines
        time.sleep(0.1)


def test_one_event_per_decided_request(evidence_envoy, mocks):
    envoy, policy_path = evidence_envoy
    reqs = traffic.realistic(400, seed=21)
    for i, r in enumerate(reqs):
        r["headers"]["x-request-id"] = "evt-%04d" % i
        r["headers"]["traceparent"] = "00-%032x-%016x-01" % (i + 1, i + 1)
        if i % 10 == 0:
            r["headers"]["x-mock-status"] = "503"
        if i % 7 == 0:
            r["headers"]["x-mock-fallback"] = "1"
        if i % 20 == 3:
            r["headers"]["x-mock-delay-ms"] = "120"   # a slow model
    expected = harness.cli_eval(policy_path, reqs)
    since = mocks.seq()
    responses = send_all(envoy, reqs)
    reached = mocks.by_request_id(since)
    decided = [i for i, e in enumerate(expected) if e["decisions"]]
    events = read_events(envoy, len(decided))
    by_id = {}
    for e in events:
        by_id.setdefault(e["request_id"], []).append(e)

    assert len(decided) > 300
    # Each event names the exact document in force: the hash `switchyard check` prints for the
    # file Envoy was given, and the one the filter's audit line logged when it loaded it.
    rc, out, _ = harness.cli_check(policy_path)
    assert rc == 0, out
    policy_hash = re.search(r"; hash ([0-9a-f]{32})", out).group(1)
    swap = "switchyard: policy swap: none -> 2026-11-21.3, hash %s," % policy_hash
    assert swap in envoy.wait_log(re.escape(swap))
    for i, (req, exp, resp) in enumerate(zip(reqs, expected, responses)):
        rid = req["headers"]["x-request-id"]
        got = by_id.get(rid, [])
        if not exp["decisions"]:
            assert not got, (rid, got)
            continue
        assert len(got) == 1, (rid, got)
        (e,) = got
        assert e["feature_flag.version"] == "2026-11-21.3"
        assert e["switchyard.policy.hash"] == policy_hash
        assert e["trace_id"] == "%032x" % (i + 1)
        assert [d["feature_flag.result.variant"] for d in e["decisions"]] == \
            [d["variation"] for d in exp["decisions"]]
        assert [d["feature_flag.result.reason"] for d in e["decisions"]] == \
            [d["reason"].lower() for d in exp["decisions"]]
        if exp["reject"]:
            assert e["reject"] == exp["reject"]["status"] and e["upstream"] is None
            assert rid not in reached
            continue
        # Every request that reached an upstream has exactly one event, with what ran.
        assert len(reached.get(rid, [])) == 1, rid
        assert e["cluster"] == exp["cluster"]
        assert e["upstream"]["status"] == resp.status == (503 if i % 10 == 0 else 200)
        assert e["upstream"]["fallback_used"] is (i % 7 == 0)
        assert isinstance(e["upstream"]["duration_ms"], int)
        if i % 20 == 3:
            # the time from the filter seeing the request to the response headers
            assert 120 <= e["upstream"]["duration_ms"] < 5000, e["upstream"]
        for d in e["decisions"]:
            if d["unit"] and d["feature_flag.result.reason"] not in ("error",):
                assert len(d["feature_flag.context.id"]) == 32, d


def test_no_raw_ids_in_headers_or_events(evidence_envoy, mocks):
    envoy, policy_path = evidence_envoy
    reqs = traffic.realistic(200, seed=22)
    for i, r in enumerate(reqs):
        r["headers"]["x-request-id"] = "raw-%04d" % i
        r["headers"]["x-user-id"] = "user-secret-%04d" % i
        r["headers"]["x-tenant-id"] = "tenant-secret-%04d" % (i % 40)
        if "x-conversation-id" in r["headers"]:
            r["headers"]["x-conversation-id"] = "conv-secret-%04d" % i
    since = mocks.seq()
    send_all(envoy, reqs)
    time.sleep(0.5)
    with open(envoy.access_log_path + ".events", encoding="utf-8") as f:
        events = [line for line in f if '"raw-' in line]
    assert len(events) > 100
    for line in events:
        assert "secret" not in line, line
    for entries in mocks.by_request_id(since).values():
        for name, value in entries[0]["headers"].items():
            if name.startswith("x-switchyard-"):
                assert "secret" not in value, (name, value)


def test_prometheus_counts_match_requests(evidence_envoy, mocks, workdir):
    envoy, policy_path = evidence_envoy
    # Earlier tests' counts must be in before the baseline is read (histograms reach the
    # admin endpoint only at Envoy's 5 s stats flush).
    time.sleep(6)
    settled = envoy.settled_prometheus()
    before = harness.prometheus_samples(settled, "switchyard_decisions")
    before_up = harness.prometheus_samples(settled, "switchyard_upstream")
    before_lat = harness.prometheus_samples(settled, "switchyard_upstream_latency_count")
    reqs = traffic.realistic(300, seed=23)
    for i, r in enumerate(reqs):
        r["headers"]["x-request-id"] = "prom-%04d" % i
        if i % 5 == 0:
            r["headers"]["x-mock-status"] = "500"
    expected = harness.cli_eval(policy_path, reqs)
    send_all(envoy, reqs)
    time.sleep(6)  # histograms reach the admin endpoint at Envoy's 5 s stats flush

    def totals(samples, keys):
        out = {}
        for labels, value in samples:
            k = tuple(labels.get(x) for x in keys)
            out[k] = out.get(k, 0) + value
        return out

    keys = ("flag", "variation", "reason")
    after = totals(harness.prometheus_samples(envoy.prometheus(), "switchyard_decisions"), keys)
    base = totals(before, keys)
    want = {}
    for exp in expected:
        for d in exp["decisions"]:
            k = (d["flag"], d["variation"] or "none", d["reason"])
            want[k] = want.get(k, 0) + 1
    for k, n in want.items():
        assert after.get(k, 0) - base.get(k, 0) == n, (k, n, after.get(k), base.get(k))

    ukeys = ("flag", "variation", "status_class")
    up_after = totals(harness.prometheus_samples(envoy.prometheus(), "switchyard_upstream"), ukeys)
    up_base = totals(before_up, ukeys)
    want_up = {}
    for i, exp in enumerate(expected):
        if exp["reject"]:
            continue
        cls = "5xx" if i % 5 == 0 else "2xx"
        for d in exp["decisions"]:
            if d["variation"]:
                k = (d["flag"], d["variation"], cls)
                want_up[k] = want_up.get(k, 0) + 1
    assert want_up
    for k, n in want_up.items():
        assert up_after.get(k, 0) - up_base.get(k, 0) == n, (k, n)
    # One latency sample per response per exposed variation, whatever its status.
    lkeys = ("flag", "variation")
    lat_after = totals(harness.prometheus_samples(envoy.prometheus(),
                                                  "switchyard_upstream_latency_count"), lkeys)
    lat_base = totals(before_lat, lkeys)
    want_lat = {}
    for (flag, variation, _), n in want_up.items():
        want_lat[(flag, variation)] = want_lat.get((flag, variation), 0) + n
    for k, n in want_lat.items():
        assert lat_after.get(k, 0) - lat_base.get(k, 0) == n, (k, n, lat_after.get(k))
