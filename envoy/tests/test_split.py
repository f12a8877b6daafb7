"""3) A 30/70 split over 10,000 distinct units lands within +-1.5 points of its weights, agrees
with `switchyard eval`, and is counted in Prometheus with flag/variation/reason labels."""
import os

import pytest

import harness
from conftest import POLICIES, send_all
from harness import Envoy, prometheus_samples

N = 10000


@pytest.fixture(scope="module")
def split_envoy(artifacts, mocks, workdir):
    e = Envoy(os.path.join(POLICIES, "split30.json"), mocks, workdir=workdir, name="split")
    e.start()
    yield e
    e.stop()


def test_split_30_70_over_10000_units(split_envoy, mocks):
    reqs = [{"method": "POST", "path": "/split/v1/chat", "host": "api.example",
             "source_ip": "127.0.0.1",
             "headers": {"x-conversation-id": "split-unit-%05d" % i,
                         "x-request-id": "split-%05d" % i}} for i in range(N)]
    responses = send_all(split_envoy, reqs, threads=6)
    clusters = [r.cluster for r in responses]
    assert all(r.status == 200 for r in responses)
    share_a = clusters.count("split_a") / N * 100
    share_b = clusters.count("split_b") / N * 100
    assert share_a + share_b == pytest.approx(100)
    assert abs(share_a - 30) <= 1.5 and abs(share_b - 70) <= 1.5, (share_a, share_b)

    expected = harness.cli_eval(os.path.join(POLICIES, "split30.json"), reqs)
    diff = [i for i, (c, e) in enumerate(zip(clusters, expected)) if c != e["cluster"]]
    assert not diff, "filter and CLI disagree on %d units, e.g. %s" % (len(diff), diff[:5])

    samples = prometheus_samples(split_envoy.settled_prometheus(), "switchyard_decisions")
    by = {(s["flag"], s["variation"], s["reason"]): v for s, v in samples if "flag" in s}
    assert by.get(("split_test", "a", "SPLIT")) == clusters.count("split_a"), samples
    assert by.get(("split_test", "b", "SPLIT")) == clusters.count("split_b"), samples
