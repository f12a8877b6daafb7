"""5) Kill switch: with "enabled": false every flag serves its off_variation (consent still
applies first)."""
import pytest

import harness
from conftest import AI_CLUSTERS, compare, load_example, modified, send_all, write_policy
from harness import Envoy
import traffic


def _disable(d):
    for f in d["flags"]:
        f["enabled"] = False


@pytest.fixture(scope="module")
def killed(artifacts, mocks, workdir):
    path = write_policy(workdir, "killed.json", modified(load_example(), _disable))
    e = Envoy(path, mocks, workdir=workdir, name="killed")
    e.start()
    yield e, path
    e.stop()


def test_disabled_flags_serve_off_variation(killed, mocks):
    envoy, path = killed
    reqs = traffic.realistic(600, seed=5)
    for r in reqs:
        r["headers"]["x-request-id"] = "killed-" + r["headers"]["x-request-id"]
    since = mocks.seq()
    responses = send_all(envoy, reqs)
    seen = mocks.by_request_id(since)
    expected = harness.cli_eval(path, reqs)
    assert not compare(reqs, responses, expected, seen)[:10]
    for req, resp in zip(reqs, responses):
        h, p = req["headers"], req["path"]
        if p.startswith("/v1/chat/completions"):
            want = "support_rules" if h["x-tenant-id"] == "globex" else "support_model_a"
            assert resp.cluster == want, (req, resp)
        elif p.startswith("/v1/agent"):
            if h["x-tenant-id"] == "initech":
                assert resp.cluster == "support_rules", (req, resp)   # off_variation "off"
            else:
                assert resp.status == 403 and resp.cluster is None, (req, resp)
        else:
            assert resp.cluster == "default_upstream"
    reasons = {(d["flag"], d["variation"], d["reason"]) for e in expected for d in e["decisions"]}
    assert reasons == {("support_answer_model_route", "control", "DISABLED"),
                       ("support_answer_model_route", "fallback", "CONSENT_DENIED"),
                       ("agent_tools", "off", "DISABLED"),
                       ("agent_tools", None, "CONSENT_DENIED")}, reasons
    # acme's override and the staff rule no longer send anyone to the candidate
    assert not any(r.cluster == "support_model_b" for r in responses)
    assert not any(r.cluster in AI_CLUSTERS for req, r in zip(reqs, responses)
                   if req["headers"]["x-tenant-id"] == "globex")
