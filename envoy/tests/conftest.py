"""Fixtures for the Envoy suite: real Envoy, real switchyard filter, real `switchyard` CLI.

Run:  envoy/_venv/bin/python -m pytest envoy/tests
Needs envoy/setup.sh to have run (Envoy in envoy/_venv, the .wasm and the CLI built).
Envoys are session/module scoped so the suite starts few of them.
"""
import concurrent.futures
import copy
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import Envoy, Mocks  # noqa: E402

POLICIES = os.path.join(HERE, "policies")
AI_CLUSTERS = {"support_model_a", "support_model_b", "agent_model"}
ALL_CLUSTERS = ["support_model_a", "support_model_b", "support_rules", "agent_model",
                "split_a", "split_b",
                # testdata/policies/operators.json (the golden cases)
                "model_small", "model_large", "model_beta"]


def load_example():
    with open(harness.EXAMPLE_POLICY, encoding="utf-8") as f:
        return json.load(f)


def write_policy(tmp_dir, name, doc):
    """Write a policy document (dict or text) and return its path."""
    path = os.path.join(str(tmp_dir), name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
    return path


@pytest.fixture(scope="session")
def artifacts():
    missing = [p for p in (harness.WASM, harness.CLI) if not os.path.isfile(p)]
    try:
        harness.envoy_binary()
    except RuntimeError as e:
        missing.append(str(e))
    if missing:
        pytest.fail("missing: %s -- run envoy/setup.sh first" % ", ".join(missing), pytrace=False)
    return {"wasm": harness.WASM, "cli": harness.CLI}


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("switchyard-envoy"))


@pytest.fixture(scope="session")
def mocks(workdir):
    m = Mocks(ALL_CLUSTERS, workdir=workdir).start()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def example_envoy(artifacts, mocks, workdir):
    """Envoy with examples/support-copilot/policy.json, two workers."""
    e = Envoy(harness.EXAMPLE_POLICY, mocks, workdir=workdir, concurrency=2, name="example")
    e.start()
    yield e
    e.stop()


@pytest.fixture(scope="session")
def rich_envoy(artifacts, mocks, workdir):
    """Envoy with tests/policies/rich.json (operators, cookies, query, several flags)."""
    e = Envoy(os.path.join(POLICIES, "rich.json"), mocks, workdir=workdir, name="rich")
    e.start()
    yield e
    e.stop()


def send_all(envoy, requests, threads=4):
    """Send requests (eval input form) over `threads` keep-alive connections; responses in
    request order."""
    chunks = [list(range(i, len(requests), threads)) for i in range(threads)]
    out = [None] * len(requests)

    def run(idx):
        c = envoy.client()
        try:
            for i in idx:
                out[i] = c.send(requests[i])
        finally:
            c.close()

    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        for f in [ex.submit(run, idx) for idx in chunks]:
            f.result()
    return out


def find_values(obj):
    """All scalar values anywhere in a JSON value (to look for flag/reason in a reply body)."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from find_values(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from find_values(v)
    else:
        yield obj


def compare(requests, responses, expected, upstream_by_id):
    """Check each request's fate against `switchyard eval`. Returns a list of mismatch texts."""
    bad = []
    for req, resp, exp in zip(requests, responses, expected):
        rid = req["headers"]["x-request-id"]
        seen = upstream_by_id.get(rid, [])
        if exp.get("reject"):
            status = exp["reject"]["status"]
            body = resp.json
            flag = next((d["flag"] for d in exp["decisions"] if d["reason"] == "CONSENT_DENIED"),
                        None)
            vals = set(find_values(body)) if body is not None else set()
            if resp.status != status or seen or body is None or flag not in vals \
                    or "CONSENT_DENIED" not in vals:
                bad.append("%s: expected reject %s (flag %s); got %s, upstream saw %d: %r"
                           % (rid, status, flag, resp.status, len(seen), resp.body[:200]))
        else:
            want = exp.get("cluster") or "default_upstream"
            got = [e["cluster"] for e in seen]
            if resp.status != 200 or resp.cluster != want or got != [want]:
                bad.append("%s: %s %s expected %s; got status %s, answered by %s, upstream log %s"
                           % (rid, req["method"], req["path"], want, resp.status, resp.cluster,
                              got))
    return bad


def modified(doc, fn):
    d = copy.deepcopy(doc)
    fn(d)
    return d
