"""6) A client sending x-switchyard-cluster or other x-switchyard-* headers can neither pick a
cluster nor have its copies reach an upstream."""
import itertools

import harness
from conftest import compare

SPOOFS = [
    [("x-switchyard-cluster", "support_model_b")],
    [("X-Switchyard-Cluster", "agent_model")],
    [("x-switchyard-cluster", "nonexistent_cluster")],
    [("x-switchyard-cluster", "default_upstream")],
    [("x-switchyard-cluster", "support_model_b"), ("x-switchyard-cluster", "agent_model")],
    [("x-switchyard-exposure", 'support_answer_model_route;variation="candidate";reason="SPOOF"')],
    [("x-switchyard-policy-version", "spoofed-version")],
    [("x-switchyard-anything", "spoofed-anything"), ("X-SWITCHYARD-CLUSTER", "support_model_b")],
]
PATHS = ["/v1/chat/completions", "/v1/agent", "/v1/embeddings", "/healthz"]
TENANTS = ["hooli", "globex", "initech", "bank-one", None]


def test_client_cannot_pick_cluster_or_forward_switchyard_headers(example_envoy, mocks):
    reqs, pairs = [], []
    for n, (spoof, path, tenant) in enumerate(itertools.product(SPOOFS, PATHS, TENANTS)):
        h = {"x-user-id": "sp-%d" % n, "x-conversation-id": "sp-%d" % n, "x-plan": "free",
             "x-request-id": "spoof-%d" % n}
        if tenant:
            h["x-tenant-id"] = tenant
        reqs.append({"method": "POST", "path": path, "host": "api.example",
                     "source_ip": "127.0.0.1", "headers": h})
        pairs.append(spoof)
    # what the policy says for the same requests *without* the spoofed headers
    expected = harness.cli_eval(harness.EXAMPLE_POLICY, reqs)
    since = mocks.seq()
    c = example_envoy.client()
    responses = [c.request(r["method"], r["path"], list(r["headers"].items()) + sp,
                           host=r["host"]) for r, sp in zip(reqs, pairs)]
    c.close()
    seen = mocks.by_request_id(since)
    bad = compare(reqs, responses, expected, seen)
    assert not bad, "\n".join(bad[:10])
    for req, exp in zip(reqs, expected):
        for entry in seen.get(req["headers"]["x-request-id"], []):
            sy = [(k, v) for k, v in entry["header_list"] if k.startswith("x-switchyard-")]
            names = [k for k, _ in sy]
            assert len(names) == len(set(names)), ("duplicate switchyard headers", req, sy)
            if not exp["decisions"]:
                assert not sy, ("untouched request carried switchyard headers", req, sy)
                continue
            # only the filter's own headers, with the filter's values
            allowed = {"x-switchyard-exposure", "x-switchyard-policy-version"}
            if exp["cluster"]:
                allowed.add("x-switchyard-cluster")
            got = dict(sy)
            route = next((d for d in exp["decisions"] if d["cluster"] == exp["cluster"]), None)
            for name in names:
                if name.startswith("x-switchyard-attr-"):
                    # the routing variation's attributes, as plain headers
                    assert route and got[name] in route["attributes"].values(), (req, sy)
                else:
                    assert name in allowed, (req, sy)
            if exp["cluster"]:
                assert got.get("x-switchyard-cluster") == exp["cluster"], (req, sy)
            assert got["x-switchyard-policy-version"] == "2026-11-21.3", (req, sy)
            assert "SPOOF" not in got["x-switchyard-exposure"], (req, sy)


def test_odd_requests_do_not_break_the_filter(example_envoy, mocks):
    """Invalid UTF-8, many switchyard headers, long values: each gets an answer, no client copy
    gets through, and the filter (one VM per worker) keeps working afterwards."""
    c = example_envoy.client()
    odd = [
        [("x-tenant-id", "glob\xe9x"), ("x-conversation-id", "\xff\xfe")],
        [("x-switchyard-cluster", "agent_model")] * 50 + [("x-tenant-id", "acme")],
        [("x-tenant-id", "a" * 8000), ("x-conversation-id", "c" * 8000), ("x-plan", "pro")],
        [("x-tenant-id", ""), ("x-plan", "")],
        [("x-switchyard-exposure", "\xff" * 10), ("x-tenant-id", "globex")],
    ]
    since = mocks.seq()
    for i, headers in enumerate(odd * 4):
        for path in ("/v1/chat/completions", "/v1/agent"):
            r = c.request("POST", path, headers + [("x-request-id", "odd-%d" % i)])
            assert r.status in (200, 403), r
            if r.status == 200:
                assert r.cluster is not None
    for e in mocks.log(since=since):
        sy = [(k, v) for k, v in e["header_list"] if k.startswith("x-switchyard-")]
        assert all("\xff" not in v for _, v in sy) and len(sy) == len(dict(sy)), sy
        if e["headers"].get("x-tenant-id") == "globex":
            assert e["cluster"] not in ("support_model_a", "support_model_b", "agent_model")
    c.close()
    r = example_envoy.client().request("POST", "/v1/chat/completions",
                                       {"x-tenant-id": "acme", "x-conversation-id": "after-odd"})
    assert r.status == 200 and r.cluster == "support_model_b", r
