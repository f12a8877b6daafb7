"""2) A unit keeps its variation across requests, across both workers and across a restart."""
import harness


def _requests():
    reqs = []
    for i in range(150):   # chat: plan pro -> 5/95 split by conversation
        reqs.append({"method": "POST", "path": "/v1/chat/completions", "host": "api.example",
                     "source_ip": "127.0.0.1",
                     "headers": {"x-tenant-id": "hooli", "x-plan": "pro", "x-user-id": "u%d" % i,
                                 "x-conversation-id": "sticky-conv-%d" % i}})
    for i in range(150):   # agent: initech -> 50/50 split by user
        reqs.append({"method": "POST", "path": "/v1/agent", "host": "api.example",
                     "source_ip": "127.0.0.1",
                     "headers": {"x-tenant-id": "initech", "x-user-id": "sticky-user-%d" % i}})
    return reqs


def _round(envoy, reqs, round_no, connections=24):
    """Send every request once, spread over many fresh connections (so both workers serve)."""
    got = {}
    clients = [envoy.client() for _ in range(connections)]
    for i, r in enumerate(reqs):
        c = clients[(i * 7 + round_no) % connections]
        resp = c.send(r)
        assert resp.status == 200, resp
        got[i] = resp.cluster
        if i % 25 == 0:          # churn connections
            c.close()
    for c in clients:
        c.close()
    return got


def test_unit_keeps_variation_across_workers_and_restart(example_envoy):
    reqs = _requests()
    expected = harness.cli_eval(harness.EXAMPLE_POLICY, reqs)
    want = {i: e["cluster"] for i, e in enumerate(expected)}
    assert len(set(want.values())) >= 3     # both splits really split

    before = example_envoy.worker_connections()
    rounds = [_round(example_envoy, reqs, n) for n in range(4)]
    after = example_envoy.worker_connections()
    served = {w: after.get(w, 0) - before.get(w, 0) for w in after}
    assert len(served) == 2 and all(v > 0 for v in served.values()), served

    example_envoy.restart()
    rounds += [_round(example_envoy, reqs, n) for n in range(4, 6)]

    for i in range(len(reqs)):
        seen = {r[i] for r in rounds}
        assert seen == {want[i]}, (reqs[i], want[i], seen)
