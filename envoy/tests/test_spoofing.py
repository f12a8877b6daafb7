"""6) A client sending x-switchyard-cluster or other x-switchyard-* headers can neither pick a
cluster nor have its copies reach an upstream."""
import itertools

import harness
from conftest import compare, send_all

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
    spoofed_values = {v for sp in SPOOFS for _, v in sp}
    for req, exp in zip(reqs, expected):
        for entry in seen.get(req["headers"]["x-request-id"], []):
            sy = [(k, v) for k, v in entry["header_list"] if k.startswith("x-switchyard-")]
            assert not [kv for kv in sy if kv[1] in spoofed_values], (req, sy)
            names = [k for k, _ in sy]
            assert len(names) == len(set(names)), ("duplicate switchyard headers", req, sy)
            if not exp["decisions"]:
                assert not sy, ("untouched request carried switchyard headers", req, sy)
            assert "x-switchyard-anything" not in names
