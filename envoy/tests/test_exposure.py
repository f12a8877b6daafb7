"""8) Exposure: the upstream gets x-switchyard-exposure (an RFC 8941 list, one item per
decision, with variation, reason, rule, bucket, version) and x-switchyard-policy-version; the
access log has a line with the filter state for each request."""

import json
import os

import pytest

import harness
import traffic
from conftest import POLICIES, send_all
from sfv import Token, parse_list


@pytest.mark.parametrize("which", ["example", "rich"])
def test_exposure_headers_and_access_log(which, request, mocks):
    if which == "example":
        envoy = request.getfixturevalue("example_envoy")
        policy_path = harness.EXAMPLE_POLICY
        reqs = traffic.realistic(300, seed=8)
    else:
        envoy = request.getfixturevalue("rich_envoy")
        policy_path = os.path.join(POLICIES, "rich.json")
        reqs = traffic.varied(300, seed=9)
    with open(policy_path) as f:
        version = json.load(f)["version"]
    for r in reqs:
        r["headers"]["x-request-id"] = "expo-%s-%s" % (which, r["headers"]["x-request-id"])
    expected = harness.cli_eval(policy_path, reqs)
    since = mocks.seq()
    responses = send_all(envoy, reqs)
    seen = mocks.by_request_id(since)
    checked = 0
    for req, exp, resp in zip(reqs, expected, responses):
        rid = req["headers"]["x-request-id"]
        entries = seen.get(rid, [])
        if exp["reject"]:
            assert not entries and resp.status == 403
            continue
        assert len(entries) == 1, (rid, entries)
        h = entries[0]["headers"]
        if not exp["decisions"]:
            assert "x-switchyard-exposure" not in h, h
            continue
        assert h.get("x-switchyard-policy-version") == version, h
        items = parse_list(h["x-switchyard-exposure"])
        assert len(items) == len(exp["decisions"]), (h["x-switchyard-exposure"], exp)
        for (flag, params), d in zip(items, exp["decisions"]):
            assert isinstance(flag, (Token, str)) and str(flag) == d["flag"]
            assert params.get("variation") == d["variation"], (params, d)
            assert params.get("reason") == d["reason"], (params, d)
            assert params.get("version") == version, params
            if d["rule"] is None:
                assert "rule" not in params, (params, d)
            else:
                assert str(params.get("rule")) == str(d["rule"]), (params, d)
            if d["bucket"] is None:
                assert "bucket" not in params, (params, d)
            else:
                assert params.get("bucket") == d["bucket"], (params, d)
        checked += 1
    assert checked > 100
    assert {str(d["rule"]) for e in expected for d in e["decisions"]} - {"None"}

    # one access log line per request, with the filter state for decided requests
    by_id = envoy.access_log_for([r["headers"]["x-request-id"] for r in reqs])
    assert len(by_id) == len(reqs) and all(len(v) == 1 for v in by_id.values())
    for req, exp, resp in zip(reqs, expected, responses):
        (line,) = by_id[req["headers"]["x-request-id"]]
        assert line["response_code"] == resp.status
        want_cluster = None if exp["reject"] else (exp["cluster"] or "default_upstream")
        if want_cluster is None:
            # a local reply: no upstream host (%UPSTREAM_CLUSTER% still names the route's
            # cluster, which Envoy chose before the filter ran)
            assert line["upstream_host"] in (None, "-"), line
            assert line["response_code_details"] != "via_upstream", line
        else:
            assert line["upstream_cluster"] == want_cluster and line["upstream_host"], line
        if exp["decisions"]:
            state = line.get("exposure")
            assert state, ("no filter state in access log", line)
            for d in exp["decisions"]:
                assert d["flag"] in str(state), (state, d)
