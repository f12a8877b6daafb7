"""11) The shared golden cases (testdata/golden.json, whose expectations were reviewed by hand
against the contract) through real Envoy and the real filter: where each request goes (or the
local reply it gets) and the exposure header the upstream sees. The engine tests, the host
tests and the JavaScript tests run the same cases."""
import copy
import json
import os

import pytest

import harness
from conftest import compare, send_all
from harness import Envoy
from sfv import parse_list

with open(os.path.join(harness.REPO, "testdata", "golden.json"), encoding="utf-8") as f:
    GOLDEN = json.load(f)


def _requests(policy):
    """The policy's cases as requests, each with its own x-request-id. Cases that need another
    client address are left out: Envoy sees every test request from 127.0.0.1."""
    cases, requests = [], []
    for n, case in enumerate(c for c in GOLDEN["cases"] if c["policy"] == policy):
        if case["request"].get("source_ip", "127.0.0.1") != "127.0.0.1":
            continue
        req = copy.deepcopy(case["request"])
        req.setdefault("headers", {})["x-request-id"] = "golden-%s-%d" % (policy, n)
        cases.append(case)
        requests.append(req)
    return cases, requests


@pytest.mark.parametrize("policy", sorted(GOLDEN["policies"]))
def test_golden_cases_in_envoy(mocks, workdir, policy):
    path = os.path.join(harness.REPO, GOLDEN["policies"][policy])
    cases, requests = _requests(policy)
    assert len(cases) >= 4, "the policy's cases"
    e = Envoy(path, mocks, workdir=workdir, name="golden-" + policy)
    e.start()
    try:
        since = mocks.seq()
        responses = send_all(e, requests, threads=1)
        seen = mocks.by_request_id(since)
    finally:
        e.stop()
    expected = [c["expect"] for c in cases]
    bad = compare(requests, responses, expected, seen)
    for case, req, exp in zip(cases, requests, expected):
        entries = seen.get(req["headers"]["x-request-id"], [])
        if exp["reject"] or len(entries) != 1:
            continue                                   # compare() judged these
        exposure = entries[0]["headers"].get("x-switchyard-exposure")
        if not exp["decisions"]:
            if exposure is not None:
                bad.append("%s: no decision, but exposure %r" % (case["name"], exposure))
            continue
        items = parse_list(exposure or "")
        got = [(str(flag), params.get("variation"), str(params.get("reason")),
                None if "rule" not in params else str(params["rule"]), params.get("bucket"))
               for flag, params in items]
        want = [(d["flag"], d["variation"], d["reason"],
                 None if d["rule"] is None else str(d["rule"]), d["bucket"])
                for d in exp["decisions"]]
        if got != want:
            bad.append("%s: exposure %s, expected %s" % (case["name"], got, want))
    assert not bad, "\n".join(bad)
