"""4) Consent: no request from a tenant opted out of an opt-out class, and none from a tenant
without an opt-in record for an opt-in class, reaches an AI cluster. A reject is a local
403 with a JSON body naming flag and reason, and upstreams see nothing."""
import itertools

from conftest import AI_CLUSTERS, find_values, send_all

SPOOF = [{}, {"x-switchyard-cluster": "support_model_b"}, {"x-switchyard-cluster": "agent_model"}]


def _chat_requests():
    """globex (opted out of support_copilot) in every situation other settings would route to
    an AI model: paid plans (canary split), override-like and staff-like headers, spoofing."""
    reqs = []
    n = 0
    for plan, conv, spoof, path in itertools.product(
            ["free", "pro", "enterprise", None], ["c1", "c2", "c3", None], SPOOF,
            ["/v1/chat/completions", "/v1/chat/completions?x=1", "/v1/chat/completions/stream",
             # other spellings of the path: Envoy normalizes them (normalize_path,
             # merge_slashes) before the filter compares the path_prefix
             "/v1//chat/completions", "/v1/./chat/completions"]):
        h = {"x-tenant-id": "globex", "x-user-id": "gx-%d" % n, "x-request-id": "consent-c-%d" % n}
        if plan:
            h["x-plan"] = plan
        if conv:
            h["x-conversation-id"] = "globex-%s-%d" % (conv, n)
        h.update(spoof)
        reqs.append({"method": "POST", "path": path, "headers": h})
        n += 1
    return reqs


def _agent_requests():
    """Tenants with no agent_actions opt-in record: acme, globex, bank-one, our-company,
    unknown tenants, no tenant at all."""
    reqs = []
    n = 0
    for tenant, spoof, path in itertools.product(
            ["acme", "globex", "bank-one", "our-company", "hooli", "INITECH", "initech2", None],
            SPOOF, ["/v1/agent", "/v1/agent/actions", "/v1/agent?tool=search",
                    # spellings that would step around a raw prefix test
                    "//v1/agent", "/v1//agent/actions", "/v1/./agent", "/v1/x/../agent/actions",
                    "/%761/agent"]):
        h = {"x-user-id": "agent-user-%d" % n, "x-request-id": "consent-a-%d" % n}
        if tenant:
            h["x-tenant-id"] = tenant
        h.update(spoof)
        reqs.append({"method": "POST", "path": path, "headers": h})
        n += 1
    return reqs


def test_opted_out_tenant_never_reaches_ai(example_envoy, mocks):
    reqs = _chat_requests()
    since = mocks.seq()
    responses = send_all(example_envoy, reqs)
    seen = mocks.by_request_id(since)
    for req, resp in zip(reqs, responses):
        rid = req["headers"]["x-request-id"]
        got = [e["cluster"] for e in seen.get(rid, [])]
        assert resp.status == 200 and got == ["support_rules"], (req, resp, got)
        assert not AI_CLUSTERS & set(got)


def test_duplicate_tenant_header_does_not_bypass_opt_out(example_envoy, mocks):
    """The engine reads the first occurrence of a header; a second tenant header must not
    turn an opted-out tenant into an unknown (allowed) one."""
    since = mocks.seq()
    c = example_envoy.client()
    results = []
    for i, extra in enumerate(["acme", "hooli", ""]):
        headers = [("x-tenant-id", "globex"), ("x-tenant-id", extra), ("x-plan", "pro"),
                   ("x-conversation-id", "dup-%d" % i), ("x-request-id", "consent-dup-%d" % i)]
        results.append(c.request("POST", "/v1/chat/completions", headers))
    c.close()
    seen = mocks.by_request_id(since)
    for i, resp in enumerate(results):
        got = [e["cluster"] for e in seen.get("consent-dup-%d" % i, [])]
        assert not AI_CLUSTERS & set(got), ("duplicate x-tenant-id reached an AI cluster",
                                             i, resp, got)
        # globex's consent fallback, as for a single header
        assert resp.status == 200 and got == ["support_rules"], (i, resp, got)


def test_opt_in_class_without_record_is_rejected_locally(example_envoy, mocks):
    reqs = _agent_requests()
    since = mocks.seq()
    responses = send_all(example_envoy, reqs)
    seen = mocks.by_request_id(since)
    for req, resp in zip(reqs, responses):
        rid = req["headers"]["x-request-id"]
        assert rid not in seen, ("reject reached an upstream", req, seen.get(rid))
        assert resp.status == 403, (req, resp)
        assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
        assert resp.cluster is None
        body = resp.json
        assert body is not None, resp
        vals = set(find_values(body))
        assert "agent_tools" in vals and "CONSENT_DENIED" in vals, body
    # and the access log shows the local reply
    log = example_envoy.access_log_for([r["headers"]["x-request-id"] for r in reqs])
    assert len(log) == len(reqs)
    for req in reqs:
        (line,) = log[req["headers"]["x-request-id"]]
        assert line["response_code"] == 403 and line["upstream_host"] in (None, "-"), line
        assert line["response_code_details"] == "switchyard_consent_denied", line
        assert '"CONSENT_DENIED"' in (line["exposure"] or ""), line


def test_opted_in_tenant_reaches_agent(example_envoy, mocks):
    since = mocks.seq()
    reqs = [{"method": "POST", "path": "/v1/agent",
             "headers": {"x-tenant-id": "initech", "x-user-id": "in-%d" % i,
                         "x-request-id": "consent-in-%d" % i}} for i in range(60)]
    responses = send_all(example_envoy, reqs)
    assert all(r.status == 200 for r in responses)
    clusters = {r.cluster for r in responses}
    assert clusters == {"agent_model", "support_rules"}, clusters
    assert sum(len(v) for v in mocks.by_request_id(since).values()) == 60
