"""The README's "Adding the filter to an existing Envoy" block, run as written: Envoy starts
with exactly that HttpConnectionManager configuration (only the module path and the policy
filled in), forged identity headers and other spellings of a gated path do not get past the
consent gate, and the route-level removal the README warns against really is too late."""
import copy
import json
import os
import re

import pytest
import yaml

import harness
from conftest import compare

README = os.path.join(harness.REPO, "README.md")
HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
IDENTITY = ("x-tenant-id", "x-user-id")
# (sent, what the upstream acts on): Envoy's normalization turns each into the second form.
PATHS = [("/v1/chat/completions", "/v1/chat/completions"), ("/v1/agent/run", "/v1/agent/run"),
         ("//v1/agent/run", "/v1/agent/run"), ("/v1//agent/run", "/v1/agent/run"),
         ("/v1/x/../agent/run", "/v1/agent/run"), ("/v1/%61gent/run", "/v1/agent/run")]
TENANTS = ["acme", "initech", "globex", "hooli"]


def readme_block():
    """The first YAML block of the README's "Adding the filter" section."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Adding the filter to an existing Envoy"):]
    section = section[:section.index("\n## ", 1)]
    m = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert m, "no yaml block in the README's Adding section"
    return yaml.safe_load(m.group(1))


def fill_in(hcm, policy_text, wasm):
    """Put the built module and a whole policy where the README has a path and "...". """
    found = 0
    for f in hcm["http_filters"]:
        if f["name"] == "envoy.filters.http.wasm":
            cfg = f["typed_config"]["config"]
            assert cfg["vm_config"]["code"]["local"]["filename"] == \
                "/etc/envoy/switchyard_plugin.wasm"
            cfg["vm_config"]["code"]["local"]["filename"] = wasm
            cfg["configuration"]["value"] = policy_text
            found += 1
    assert found == 1
    return hcm


class SnippetEnvoy(harness.Envoy):
    """An Envoy whose HttpConnectionManager is a given dict (the README's block), in a bootstrap
    with nothing else but the listener, the admin endpoint and the mocks as clusters."""

    def __init__(self, hcm, mocks, **kw):
        self.hcm = hcm
        super().__init__(harness.EXAMPLE_POLICY, mocks, **kw)

    def render(self):
        hcm = dict(self.hcm, **{"@type": HCM_TYPE, "stat_prefix": "readme"})
        clusters = [{
            "name": name, "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {"address": host,
                                                            "port_value": port}}}}]}]},
        } for name, (host, port) in self.mocks.addresses().items()]
        return json.dumps({
            "node": {"id": "readme", "cluster": "switchyard"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {
                "listeners": [{
                    "name": "switchyard_ingress",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": hcm}]}]}],
                "clusters": clusters}}, indent=1)


def policy_text():
    with open(harness.EXAMPLE_POLICY, encoding="utf-8") as f:
        return f.read()


def forged_requests():
    """Requests whose identity headers a client made up, on every spelling of the paths,
    some also naming a cluster themselves."""
    reqs, acts_on = [], []
    for n, ((sent, normal), tenant) in enumerate(
            (p, t) for p in PATHS for t in TENANTS):
        h = {"x-tenant-id": tenant, "x-user-id": "u-%d" % n, "x-conversation-id": "c-%d" % n,
             "x-plan": "pro", "x-request-id": "readme-%d" % n}
        if n % 3 == 0:
            h["x-switchyard-cluster"] = "support_model_b"
        reqs.append({"method": "POST", "path": sent, "host": "api.example",
                     "source_ip": "127.0.0.1", "headers": h})
        acts_on.append(dict(reqs[-1], path=normal))
    return reqs, acts_on


def run(envoy, mocks, reqs):
    since = mocks.seq()
    c = envoy.client()
    try:
        responses = [c.send(r) for r in reqs]
    finally:
        c.close()
    return responses, mocks.by_request_id(since)


def without_identity(req):
    r = copy.deepcopy(req)
    for name in IDENTITY:
        r["headers"].pop(name, None)
    return r


def test_readme_block_validates(artifacts, mocks, workdir):
    e = SnippetEnvoy(fill_in(readme_block(), policy_text(), harness.WASM), mocks,
                     workdir=workdir, name="readme-validate")
    rc, out = harness.validate(e.config_path)
    assert rc == 0 and "OK" in out, out[-3000:]


def test_readme_block_ignores_forged_identity_and_path_spellings(artifacts, mocks, workdir):
    """With the README's block, what switchyard does for a forged request is what the policy
    says for the same request without the identity headers, on the normalized path: the
    header_mutation filter removed them first (the authenticating filter would set them).
    The example policy gates /v1/agent by opt-in consent, so every spelling of it is a 403."""
    reqs, acts_on = forged_requests()
    expected = harness.cli_eval(harness.EXAMPLE_POLICY, [without_identity(r) for r in acts_on])
    assert sum(1 for e in expected if e.get("reject")) >= 4 * len(TENANTS), \
        "the example policy no longer refuses the agent path without a tenant"
    with SnippetEnvoy(fill_in(readme_block(), policy_text(), harness.WASM), mocks,
                      workdir=workdir, name="readme") as envoy:
        responses, seen = run(envoy, mocks, reqs)
    bad = compare(acts_on, responses, expected, seen)
    assert not bad, "\n".join(bad[:10])
    for entries in seen.values():
        for entry in entries:
            names = {k for k, _ in entry["header_list"]}
            assert not names & set(IDENTITY), ("forged identity reached upstream", entry)


def test_readme_block_redirects_escaped_slashes(artifacts, mocks, workdir):
    """`/v1%2Fagent/run` is the agent path to many upstreams; with the README's
    `path_with_escaped_slashes_action` Envoy redirects it to its unescaped form (which the
    filter then sees as /v1/agent/run) instead of passing it on under a path no scope matches."""
    with SnippetEnvoy(fill_in(readme_block(), policy_text(), harness.WASM), mocks,
                      workdir=workdir, name="readme-escaped") as envoy:
        since = mocks.seq()
        c = envoy.client()
        try:
            r = c.request("POST", "/v1%2Fagent/run", {"x-request-id": "readme-escaped",
                                                      "x-conversation-id": "c-1"})
        finally:
            c.close()
    assert r.status in (301, 302, 307, 308), r
    assert r.headers.get("location", "").endswith("/v1/agent/run"), r.headers
    assert not mocks.by_request_id(since), "nothing reached an upstream"


def test_route_level_removal_is_too_late(artifacts, mocks, workdir):
    """What the README warns against: without the header_mutation filter, removing the headers
    with the route's request_headers_to_remove only cleans the upstream's copy; switchyard has
    already acted on the forged tenant (acme's override, initech's agent consent)."""
    hcm = fill_in(readme_block(), policy_text(), harness.WASM)
    hcm["http_filters"] = [f for f in hcm["http_filters"]
                           if f["name"] != "envoy.filters.http.header_mutation"]
    for route in hcm["route_config"]["virtual_hosts"][0]["routes"]:
        route["request_headers_to_remove"] = list(IDENTITY)
    reqs, acts_on = forged_requests()
    obeyed = harness.cli_eval(harness.EXAMPLE_POLICY, acts_on)
    stripped = harness.cli_eval(harness.EXAMPLE_POLICY, [without_identity(r) for r in acts_on])
    differ = [i for i, (a, b) in enumerate(zip(obeyed, stripped))
              if (a.get("reject"), a.get("cluster")) != (b.get("reject"), b.get("cluster"))]
    assert differ, "no request in the mix depends on the tenant"
    with SnippetEnvoy(hcm, mocks, workdir=workdir, name="readme-route-removal") as envoy:
        responses, seen = run(envoy, mocks, reqs)
    bad = compare(acts_on, responses, obeyed, seen)
    assert not bad, "\n".join(bad[:10])


@pytest.mark.parametrize("key", ["normalize_path", "merge_slashes",
                                 "path_with_escaped_slashes_action"])
def test_readme_block_normalizes_paths(key):
    assert key in readme_block()
