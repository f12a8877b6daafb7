"""8) Exposure: the upstream gets x-switchyard-exposure (an RFC 8941 list, one item per
decision, with variation, reason, rule, bucket, version) and x-switchyard-policy-version; the
access log has a line with the filter state for each request."""
import json

import harness
import traffic
from conftest import send_all
from sfv import Token, parse_list

POLICY_VERSION = "2026-11-21.3"


def test_exposure_headers_and_access_log(example_envoy, mocks):
    reqs = traffic.realistic(300, seed=8)
    for r in reqs:
        r["headers"]["x-request-id"] = "expo-" + r["headers"]["x-request-id"]
    expected = harness.cli_eval(harness.EXAMPLE_POLICY, reqs)
    since = mocks.seq()
    responses = send_all(example_envoy, reqs)
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
        assert h.get("x-switchyard-policy-version") == POLICY_VERSION, h
        items = parse_list(h["x-switchyard-exposure"])
        assert len(items) == len(exp["decisions"]), (h["x-switchyard-exposure"], exp)
        for (flag, params), d in zip(items, exp["decisions"]):
            assert isinstance(flag, (Token, str)) and str(flag) == d["flag"]
            assert params.get("variation") == d["variation"], (params, d)
            assert params.get("reason") == d["reason"], (params, d)
            assert params.get("version") == POLICY_VERSION, params
            if d["rule"] is None:
                assert "rule" not in params, (params, d)
            else:
                assert str(params.get("rule")) == str(d["rule"]), (params, d)
            if d["bucket"] is None:
                assert "bucket" not in params, (params, d)
            else:
                assert params.get("bucket") == d["bucket"], (params, d)
        checked += 1
    assert checked > 150

    # one access log line per request, with the filter state for decided requests
    deadline_ids = {r["headers"]["x-request-id"] for r in reqs}
    for _ in range(50):
        by_id = {}
        for l in example_envoy.access_log():
            if l.get("request_id") in deadline_ids:
                by_id.setdefault(l["request_id"], []).append(l)
        if len(by_id) == len(reqs):
            break
        import time
        time.sleep(0.2)
    assert len(by_id) == len(reqs) and all(len(v) == 1 for v in by_id.values())
    for req, exp, resp in zip(reqs, expected, responses):
        (line,) = by_id[req["headers"]["x-request-id"]]
        assert line["response_code"] == resp.status
        want_cluster = None if exp["reject"] else (exp["cluster"] or "default_upstream")
        if want_cluster is None:
            assert line["upstream_cluster"] in (None, "-"), line
        else:
            assert line["upstream_cluster"] == want_cluster, line
        if exp["decisions"]:
            state = line.get("exposure")
            assert state, ("no filter state in access log", line)
            for d in exp["decisions"]:
                assert d["flag"] in str(state), (state, d)
