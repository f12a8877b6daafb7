"""The lean settings through real Envoy: with the filter state, version and plain attribute
headers and upstream metrics off, switchyard still routes every request as `switchyard eval`
says and stamps the exposure list (which carries the version and the attributes), and does
nothing else: no other switchyard header upstream, no filter state, no upstream stats. The
request-only module (no response callback) does the same, and refuses a policy that needs the
response."""

import json
import re
import time

import pytest

import harness
import traffic
from conftest import compare, load_example, send_all, write_policy
from sfv import parse_list

LEAN = {"exposure_state": False, "exposure_event": False, "version_header": False,
        "attribute_headers": False, "upstream_metrics": False}


MODULES = {"full": harness.WASM, "request-only": harness.REQUEST_ONLY_WASM}


def load_lean_example():
    with open(harness.LEAN_EXAMPLE_POLICY, encoding="utf-8") as f:
        return json.load(f)


def test_the_lean_example_is_the_example_with_the_lean_settings():
    """examples/lean-routing/policy.json, which the suite below and the benchmark's cases (h)
    and (j) run, is the support-copilot policy with these settings and nothing else changed."""
    lean = load_lean_example()
    assert lean.pop("settings") == LEAN
    assert lean == load_example()


@pytest.fixture(scope="module", params=sorted(MODULES))
def lean_envoy(request, artifacts, mocks, workdir):
    path = harness.LEAN_EXAMPLE_POLICY
    policy = load_lean_example()
    e = harness.Envoy(path, mocks, workdir=workdir, concurrency=2, wasm=MODULES[request.param],
                      name="lean-" + request.param)
    e.start()
    yield e, path, policy["version"]
    e.stop()


def test_lean_settings_route_and_expose_only(lean_envoy, mocks):
    envoy, policy_path, version = lean_envoy
    reqs = traffic.realistic(300, seed=31)
    for i, r in enumerate(reqs):
        r["headers"]["x-request-id"] = "lean-%04d" % i
        # A client's copies of the headers switchyard no longer sets are still removed.
        r["headers"]["x-switchyard-policy-version"] = "forged"
        r["headers"]["x-switchyard-attr-model-route"] = "forged"
    expected = harness.cli_eval(policy_path, reqs)
    since = mocks.seq()
    responses = send_all(envoy, reqs)
    seen = mocks.by_request_id(since)
    assert compare(reqs, responses, expected, seen) == []

    exposed = 0
    for req, exp in zip(reqs, expected):
        if exp["reject"]:
            continue
        headers = seen[req["headers"]["x-request-id"]][0]["headers"]
        owned = sorted(n for n in headers if n.startswith("x-switchyard-"))
        if not exp["decisions"]:
            assert owned == [], headers
            continue
        want = ["x-switchyard-exposure"] + (["x-switchyard-cluster"] if exp["cluster"] else [])
        assert owned == sorted(want), headers
        items = parse_list(headers["x-switchyard-exposure"])
        assert [str(flag) for flag, _ in items] == [d["flag"] for d in exp["decisions"]]
        for (_, params), d in zip(items, exp["decisions"]):
            assert params.get("version") == version, params
            assert params.get("variation") == d["variation"], (params, d)
            for name, value in (d.get("attributes") or {}).items():
                assert params.get("attr." + name) == value, (params, d)
        exposed += 1
    assert exposed > 100

    # No filter state: the access log's exposure field is empty on every line, and the event
    # log (written only when the event's filter state exists) gets nothing.
    ids = [r["headers"]["x-request-id"] for r in reqs]
    logged = envoy.access_log_for(ids)
    assert len(logged) == len(ids)
    assert all(line["exposure"] in (None, "-") for lines in logged.values() for line in lines), \
        next(iter(logged.values()))
    try:
        with open(envoy.access_log_path + ".events", encoding="utf-8") as f:
            assert "lean-" not in f.read()
    except FileNotFoundError:
        pass

    # Decisions are counted; nothing per response is defined.
    time.sleep(1.5)
    prometheus = envoy.prometheus()
    assert harness.prometheus_samples(prometheus, "switchyard_decisions")
    assert not harness.prometheus_samples(prometheus, "switchyard_upstream")
    assert not harness.prometheus_samples(prometheus, "switchyard_upstream_latency_count")


def test_the_request_only_module_refuses_a_policy_that_needs_the_response(artifacts, mocks,
                                                                          workdir):
    """The example as shipped keeps the exposure event and the upstream metrics on: the
    request-only module would never see the response they need, so Envoy refuses the
    configuration, naming both settings, as `switchyard check --request-only` does."""
    path = write_policy(workdir, "request-only-example.json", load_example())
    e = harness.Envoy(path, mocks, workdir=workdir, wasm=harness.REQUEST_ONLY_WASM,
                      name="request-only-refused")
    with pytest.raises(harness.EnvoyFailed) as info:
        e.start(timeout=30)
    e.stop()
    assert info.value.returncode not in (None, 0), info.value
    for place in ("settings.exposure_event", "settings.upstream_metrics"):
        assert re.search(r"switchyard: policy rejected: %s: needs the response" % re.escape(place),
                         info.value.log), info.value.log[-3000:]
    rc, out, err = harness.cli_check(path, "--request-only")
    assert rc == 1 and "settings.exposure_event: needs the response" in err, (rc, err)
