"""9) Every Envoy YAML in envoy/ and examples/ passes `envoy --mode validate`; the example
envoy.yaml embeds exactly examples/support-copilot/policy.json; the generator embeds any
policy text verbatim."""
import glob
import json
import os
import random
import subprocess

import pytest
import yaml

import genconfig
import harness
from conftest import POLICIES

REPO = harness.REPO
COMMITTED = sorted(glob.glob(os.path.join(REPO, "envoy", "**", "*.yaml"), recursive=True) +
                   glob.glob(os.path.join(REPO, "examples", "**", "*.yaml"), recursive=True))
COMMITTED = [p for p in COMMITTED if "/_venv/" not in p and "/_run/" not in p]
EXAMPLE_YAML = os.path.join(REPO, "examples", "support-copilot", "envoy.yaml")


def _wasm_value(doc):
    for lst in doc["static_resources"]["listeners"]:
        for fc in lst["filter_chains"]:
            for f in fc["filters"]:
                for hf in f["typed_config"].get("http_filters", []):
                    if hf["name"] == "envoy.filters.http.wasm":
                        return hf["typed_config"]["config"]
    raise AssertionError("no wasm filter")


def _hcm(doc):
    """The first listener's HTTP connection manager configuration."""
    return doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def test_there_are_committed_yamls():
    assert EXAMPLE_YAML in COMMITTED


@pytest.mark.parametrize("path", COMMITTED, ids=[os.path.relpath(p, REPO) for p in COMMITTED])
def test_committed_yaml_validates(artifacts, path):
    # committed configs name the filter by its path relative to the repository root
    rc, out = harness.validate(path, cwd=REPO)
    assert rc == 0 and "OK" in out, out[-3000:]


@pytest.mark.parametrize("policy", [harness.EXAMPLE_POLICY] + sorted(
    glob.glob(os.path.join(POLICIES, "*.json"))), ids=os.path.basename)
def test_generated_config_validates(artifacts, mocks, workdir, policy):
    e = harness.Envoy(policy, mocks, workdir=workdir, name="validate-" + os.path.basename(policy))
    rc, out = harness.validate(e.config_path)
    assert rc == 0 and "OK" in out, out[-3000:]


def test_example_inline_policy_equals_policy_json():
    with open(EXAMPLE_YAML) as f:
        doc = yaml.safe_load(f)
    cfg = _wasm_value(doc)
    assert cfg["configuration"]["@type"] == "type.googleapis.com/google.protobuf.StringValue"
    assert cfg["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert cfg["name"] == "switchyard"
    inline = cfg["configuration"]["value"]
    with open(harness.EXAMPLE_POLICY) as f:
        text = f.read()
    assert json.loads(inline) == json.loads(text)
    assert inline == text        # verbatim, byte for byte


def test_example_has_routes_clusters_access_log_and_stats_tags():
    with open(EXAMPLE_YAML) as f:
        doc = yaml.safe_load(f)
    clusters = {c["name"] for c in doc["static_resources"]["clusters"]}
    assert {"support_model_a", "support_model_b", "support_rules", "agent_model",
            "default_upstream"} <= clusters
    hcm = _hcm(doc)
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert routes[0]["route"]["cluster_header"] == "x-switchyard-cluster"
    assert routes[0]["match"]["headers"][0] == {"name": "x-switchyard-cluster", "present_match": True}
    assert routes[-1]["route"]["cluster"] == "default_upstream"
    fmt = hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert "%FILTER_STATE(wasm.switchyard_exposure:PLAIN)%" in fmt.values()
    assert {t["tag_name"] for t in doc["stats_config"]["stats_tags"]} == \
        {"flag", "variation", "reason", "status_class"}
    events = [a for a in hcm["access_log"] if "filter" in a]
    assert len(events) == 1, hcm["access_log"]
    assert events[0]["typed_config"]["path"] == "/tmp/switchyard-exposure-events.jsonl"
    assert "wasm.switchyard_event" in events[0]["filter"]["extension_filter"]["typed_config"]["expression"]


def test_generator_embeds_policy_text_verbatim():
    rng = random.Random(3)
    alphabet = ['a', ' ', '\n', '\t', '"', "'", '\\', '#', ':', '-', '|', '{', '}', 'é', '€',
                '\u2028', '\x7f', '\x01', '\r', '😀', '%', '$', '${x}']
    texts = ['{"a": 1}', '{"a": 1}\n', '{"a": 1}\n\n\n', ' {"a": 1}', '', '\n', '#x', '- a',
             '{\n  "a": "b"  \n}\n', '{"s": "line\\nbreak"}\n\t\n']
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
              for _ in range(300)]
    mocks_addr = {"default_upstream": ("127.0.0.1", 1)}
    for t in texts:
        y = genconfig.render(t, "/x.wasm", mocks_addr)
        assert _wasm_value(yaml.safe_load(y))["configuration"]["value"] == t, repr(t)


def test_example_yaml_is_up_to_date():
    out = subprocess.run(["bash", os.path.join(REPO, "envoy", "make_example.sh"), "--stdout"],
                         stdout=subprocess.PIPE, check=True).stdout.decode()
    with open(EXAMPLE_YAML) as f:
        assert f.read() == out, "run envoy/make_example.sh"


STRUCT_EXAMPLE_YAML = os.path.join(REPO, "examples", "support-copilot", "envoy-yaml-policy.yaml")


def test_struct_example_is_the_same_policy_and_up_to_date():
    with open(STRUCT_EXAMPLE_YAML) as f:
        text = f.read()
    cfg = _wasm_value(yaml.safe_load(text))
    assert cfg["configuration"]["@type"] == "type.googleapis.com/google.protobuf.Struct"
    with open(harness.EXAMPLE_POLICY) as f:
        assert cfg["configuration"]["value"] == json.load(f)
    out = subprocess.run(["bash", os.path.join(REPO, "envoy", "make_example.sh"),
                          "--stdout-struct"], stdout=subprocess.PIPE, check=True).stdout.decode()
    assert text == out, "run envoy/make_example.sh"


def test_generator_writes_any_policy_as_yaml_that_reads_back():
    """Odd keys and strings (YAML's booleans, dates, numbers-as-text, quotes, control and
    line-separator characters), nesting and empty containers survive the YAML rendering."""
    rng = random.Random(5)
    words = ["on", "off", "yes", "No", "~", "null", "2026-05-12", "1e3", "0x10", "-", "#x",
             "a: b", "'q'", '"dq"', "\\", "é", "\u2028", "\x01", "\t", "", " lead", "trail ",
             "@type", "&a", "*b", "!t", "%p", "|", ">"]

    def value(depth):
        kind = rng.randrange(9 if depth < 4 else 5)
        if kind == 0:
            return rng.choice(words)
        if kind == 1:
            return rng.choice([0, -3, 2.5, 1e300, True, False, None])
        if kind == 2:
            return "".join(rng.choice(words) for _ in range(3))
        if kind in (3, 4):
            return rng.choice([{}, [], [rng.choice(words), 1, None]])
        if kind in (5, 6):
            return {rng.choice(words) + str(i): value(depth + 1) for i in range(rng.randrange(4))}
        return [value(depth + 1) for _ in range(rng.randrange(4))]

    mocks_addr = {"default_upstream": ("127.0.0.1", 1)}
    for _ in range(200):
        doc = {rng.choice(words) + str(i): value(0) for i in range(rng.randrange(1, 5))}
        y = genconfig.render(json.dumps(doc), "/x.wasm", mocks_addr, policy_as="struct")
        conf = _wasm_value(yaml.safe_load(y))["configuration"]
        assert conf["value"] == doc, y


LEAN_EXAMPLE_YAML = os.path.join(REPO, "examples", "lean-routing", "envoy.yaml")


def test_lean_example_is_the_lean_policy_on_the_request_only_module_and_up_to_date():
    """The lean example embeds its policy.json verbatim, loads the request-only module (its
    validation, in test_committed_yaml_validates, runs the module's check of the policy), and
    logs no filter state, which a policy with the lean settings never writes."""
    with open(LEAN_EXAMPLE_YAML) as f:
        text = f.read()
    cfg = _wasm_value(yaml.safe_load(text))
    with open(harness.LEAN_EXAMPLE_POLICY) as f:
        assert cfg["configuration"]["value"] == f.read()
    assert cfg["vm_config"]["code"]["local"]["filename"] == \
        "target/wasm32-wasip1/release/switchyard_plugin_request_only.wasm"
    assert "FILTER_STATE" not in text
    hcm = _hcm(yaml.safe_load(text))
    assert len(hcm["access_log"]) == 1
    fields = hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]
    with open(EXAMPLE_YAML) as f:
        full_hcm = _hcm(yaml.safe_load(f))
    full_fields = full_hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert {k: v for k, v in full_fields.items() if k != "exposure"} == fields
    out = subprocess.run(["bash", os.path.join(REPO, "envoy", "make_example.sh"), "--stdout-lean"],
                         stdout=subprocess.PIPE, check=True).stdout.decode()
    assert text == out, "run envoy/make_example.sh"
