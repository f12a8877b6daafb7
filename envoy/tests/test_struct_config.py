"""10) A policy written as YAML in the Envoy configuration (a google.protobuf.Struct, which
Envoy hands to the filter as serialized protobuf) loads, and Envoy + filter route exactly as
`switchyard eval` does with the same policy as JSON."""
import json
import os
import re

import pytest
import yaml

import harness
import traffic
from conftest import POLICIES, compare, send_all
from harness import Envoy

STRUCT_POLICIES = [harness.EXAMPLE_POLICY, os.path.join(POLICIES, "rich.json")]


def _struct_value(config_path):
    """The policy as Envoy reads it from the rendered YAML."""
    with open(config_path) as f:
        doc = yaml.safe_load(f)
    for lst in doc["static_resources"]["listeners"]:
        for fc in lst["filter_chains"]:
            for f in fc["filters"]:
                for hf in f["typed_config"].get("http_filters", []):
                    if hf["name"] == "envoy.filters.http.wasm":
                        conf = hf["typed_config"]["config"]["configuration"]
                        assert conf["@type"] == "type.googleapis.com/google.protobuf.Struct"
                        return conf["value"]
    raise AssertionError("no wasm filter")


@pytest.mark.parametrize("policy", STRUCT_POLICIES, ids=os.path.basename)
def test_struct_policy_routes_like_the_json_policy(artifacts, mocks, workdir, policy):
    name = "struct-" + os.path.basename(policy).replace(".json", "")
    e = Envoy(policy, mocks, workdir=workdir, name=name, policy_as="struct")
    with open(policy) as f:
        assert _struct_value(e.config_path) == json.load(f), "the YAML is the same policy"
    e.start()
    try:
        loaded = r"switchyard: policy \S+ loaded \(\d+ flags\)"
        log = e.wait_log(loaded)
        assert "switchyard: policy rejected" not in log, log[-3000:]
        assert re.search(loaded, log), log[-3000:]
        requests = traffic.varied(500, seed=31, id_prefix=name)
        expected = harness.cli_eval(policy, requests)
        since = mocks.seq()
        responses = send_all(e, requests)
        bad = compare(requests, responses, expected, mocks.by_request_id(since))
        assert {d["reason"] for x in expected for d in x["decisions"]} >= {"SPLIT", "DEFAULT"}
        assert not bad, "%d of %d disagree, e.g.:\n%s" % (len(bad), len(requests),
                                                          "\n".join(bad[:15]))
    finally:
        e.stop()
