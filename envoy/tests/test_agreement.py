"""1) Envoy + filter and `switchyard eval` agree on every request: which upstream got it, or
which local reply was sent."""
import os

import harness
import traffic
from conftest import POLICIES, compare, send_all


def _run(envoy, mocks, policy_path, requests):
    expected = harness.cli_eval(policy_path, requests)
    since = mocks.seq()
    responses = send_all(envoy, requests)
    upstream = mocks.by_request_id(since)
    return compare(requests, responses, expected, upstream), expected


def test_example_policy_agrees_with_cli(example_envoy, mocks):
    requests = traffic.varied(1600, seed=11, id_prefix="agree-v") + \
        traffic.realistic(900, seed=12)
    for r in requests[1600:]:
        r["headers"]["x-request-id"] = "agree-r-" + r["headers"]["x-request-id"]
    bad, expected = _run(example_envoy, mocks, harness.EXAMPLE_POLICY, requests)
    assert len(requests) >= 2000
    # the sample must actually exercise the policy
    reasons = {d["reason"] for e in expected for d in e["decisions"]}
    assert {"TARGETING_MATCH", "SPLIT", "DEFAULT", "CONSENT_DENIED", "ERROR"} <= reasons, reasons
    assert any(e["reject"] for e in expected) and any(e["cluster"] is None for e in expected)
    assert not bad, "%d of %d disagree, e.g.:\n%s" % (len(bad), len(requests), "\n".join(bad[:15]))


def test_rich_policy_agrees_with_cli(rich_envoy, mocks):
    """Operators, cookies, query parameters, source_ip, several flags, exposure-only flags."""
    requests = traffic.varied(1200, seed=21, id_prefix="rich")
    for i, r in enumerate(requests):
        h = r["headers"]
        if i % 3 == 0:
            h["x-app-version"] = ["1.9.3", "2.0.0", "2.10.1", "10.0.0-beta.1", "junk"][i % 5]
        if i % 4 == 0:
            h["x-seats"] = str([5, 100, 250, 501, 1000, -1][i % 6])
        if i % 7 == 0:
            r["path"] += ("&" if "?" in r["path"] else "?") + "beta=" + ["1", "yes", "no"][i % 3]
        if i % 11 == 0:
            h["x-region"] = "eu-central-1"
    bad, expected = _run(rich_envoy, mocks, os.path.join(POLICIES, "rich.json"), requests)
    assert not bad, "%d of %d disagree, e.g.:\n%s" % (len(bad), len(requests), "\n".join(bad[:15]))
