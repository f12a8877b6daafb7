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


def test_a_bad_struct_policy_is_refused_with_its_place(artifacts, mocks, workdir):
    """Given as a google.protobuf.Struct (YAML), a policy with errors is refused the same way,
    with the same place."""
    text = json.dumps(modified(load_example(), _typo))
    e = Envoy(text, mocks, workdir=workdir, name="bad-struct", policy_as="struct")
    with pytest.raises(EnvoyFailed) as info:
        e.start(timeout=30)
    e.stop()
    assert info.value.returncode not in (None, 0)
    assert re.search(CASES[0][2], info.value.log), info.value.log[-3000:]
