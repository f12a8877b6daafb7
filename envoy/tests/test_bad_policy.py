"""7) A policy with errors makes Envoy refuse the configuration, and Envoy's log shows the
filter's error with its place in the document."""
import json
import re

import pytest

import harness
from conftest import load_example, modified, write_policy
from harness import Envoy, EnvoyFailed


def _typo(d):
    d["flags"][0]["rules"][2]["split"][0]["variation"] = "canddate"


CASES = [
    ("split-typo", lambda: json.dumps(modified(load_example(), _typo), indent=2),
     r"switchyard: policy rejected: flags\[0\]\.rules\[2\]\.split\S*: .*canddate"),
    ("unknown-field", lambda: json.dumps(modified(load_example(),
                                                  lambda d: d["flags"][1].update(enabeld=True))),
     r"switchyard: policy rejected: flags\[1\]\.enabeld: unknown field"),
    ("not-json", lambda: '{"version": "x", "flags": [',
     r"switchyard: policy rejected: "),
]


@pytest.mark.parametrize("name,make,pattern", CASES, ids=[c[0] for c in CASES])
def test_envoy_refuses_bad_policy(artifacts, mocks, workdir, name, make, pattern):
    text = make()
    e = Envoy(text, mocks, workdir=workdir, name="bad-" + name)
    with pytest.raises(EnvoyFailed) as info:
        e.start(timeout=30)
    e.stop()
    assert info.value.returncode not in (None, 0), info.value
    log = info.value.log
    assert re.search(pattern, log), "no matching error line in Envoy's log:\n" + log[-4000:]
    # the CLI reports the same place
    path = write_policy(workdir, "bad-%s.json" % name, text)
    rc, out, err = harness.cli_check(path)
    assert rc == 1, (rc, out, err)
    first = re.search(pattern, log).group(0).split("policy rejected: ", 1)[1].split(":")[0]
    if first:
        assert first in err, (first, err)
    # validation mode refuses it too
    rc, out = harness.validate(e.config_path)
    assert rc != 0 and re.search(pattern, out), out[-3000:]


def test_struct_configuration_is_refused(artifacts, mocks, workdir):
    """google.protobuf.Struct plugin configuration reaches on_configure as serialized protobuf
    bytes, not JSON: the filter refuses it (so a policy must be given as a StringValue)."""
    e = Envoy(harness.EXAMPLE_POLICY, mocks, workdir=workdir, name="struct-config")
    with open(e.config_path) as f:
        y = f.read()
    i = y.index('"@type": type.googleapis.com/google.protobuf.StringValue')
    j = y.index("failure_policy:")
    with open(harness.EXAMPLE_POLICY) as f:
        policy = json.dumps(json.load(f))
    y = (y[:i] + '"@type": type.googleapis.com/google.protobuf.Struct\n' + " " * 18 + "value: "
         + policy + "\n" + " " * 16 + y[j:])
    with open(e.config_path, "w") as f:
        f.write(y)
    with pytest.raises(EnvoyFailed) as info:
        e.start(timeout=30)
    assert info.value.returncode not in (None, 0)
    assert re.search(r"switchyard: policy rejected: policy: the plugin configuration is not "
                     r"UTF-8 text", info.value.log), info.value.log[-3000:]
