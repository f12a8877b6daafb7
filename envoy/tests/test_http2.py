"""HTTP/2 downstream: a client speaking h2c (prior knowledge) gets the decisions it gets over
HTTP/1.1. Envoy hands the filter `:authority` and `:path` instead of a Host header and a
request line, and HTTP/2 carries header names in lower case by rule; routing, consent
rejects, exposure headers and the removal of a client's switchyard headers must not notice.

All requests go as concurrent streams on one connection, the way an SDK multiplexes them.
The client is the `h2` package (envoy/setup.sh installs it): curl 7.88 fails every request
after the first on a reused prior-knowledge connection, against any server."""
import json
import socket

import h2.config
import h2.connection
import h2.events

import harness
import traffic
from conftest import AI_CLUSTERS
from sfv import parse_list

BODY = b'{"messages": []}'


def _send_h2(port, reqs, timeout=30):
    """Every request as its own stream on one h2c connection, all sent before any response is
    read; returns [(status, {header: value}, body)] in request order."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    streams = {}
    for i, r in enumerate(reqs):
        sid = conn.get_next_available_stream_id()
        streams[sid] = i
        headers = [(":method", r["method"]), (":path", r["path"]), (":scheme", "http"),
                   (":authority", r.get("host") or "127.0.0.1")]
        headers += [(k.lower(), v) for k, v in r["headers"].items()]
        has_body = r["method"] == "POST"
        conn.send_headers(sid, headers, end_stream=not has_body)
        if has_body:
            conn.send_data(sid, BODY, end_stream=True)
    sock.sendall(conn.data_to_send())
    got = {sid: [None, {}, b""] for sid in streams}
    open_streams = set(streams)
    try:
        while open_streams:
            data = sock.recv(65536)
            assert data, "Envoy closed the connection with streams open: %s" % open_streams
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    hdrs = {k.decode(): v.decode() for k, v in event.headers}
                    got[event.stream_id][:2] = [int(hdrs[":status"]), hdrs]
                elif isinstance(event, h2.events.DataReceived):
                    got[event.stream_id][2] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    open_streams.discard(event.stream_id)
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise AssertionError("Envoy reset the stream or connection: %r" % event)
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return [tuple(got[sid]) for sid in sorted(streams, key=streams.get)]


def test_http2_clients_get_the_same_decisions(example_envoy, mocks):
    reqs = traffic.realistic(60, seed=20)
    for r in reqs:
        r["headers"]["x-request-id"] = "h2-" + r["headers"]["x-request-id"]
        # A client trying to pick an AI cluster and forge exposure, as over HTTP/1.1.
        r["headers"]["x-switchyard-cluster"] = "agent_model"
        r["headers"]["x-switchyard-exposure"] = '"forged";variation="x"'
    expected = harness.cli_eval(harness.EXAMPLE_POLICY, reqs)
    since = mocks.seq()
    responses = _send_h2(example_envoy.port, reqs)
    seen = mocks.by_request_id(since)

    kinds = set()
    for req, exp, (status, _, body) in zip(reqs, expected, responses):
        rid = req["headers"]["x-request-id"]
        entries = seen.get(rid, [])
        if exp["reject"]:
            kinds.add("reject")
            assert status == exp["reject"]["status"] and not entries, (req, status, entries)
            reply = json.loads(body)
            assert (reply["error"], reply["flag"]) == ("consent_denied", exp["reject"]["flag"])
            continue
        assert status == 200 and len(entries) == 1, (req, status, entries)
        upstream = entries[0]
        if exp["cluster"]:
            kinds.add("routed")
            assert upstream["cluster"] == exp["cluster"], (req, exp, upstream["cluster"])
        else:
            kinds.add("untouched")
            assert upstream["cluster"] not in AI_CLUSTERS, (req, upstream["cluster"])
        headers = upstream["headers"]
        if exp["decisions"]:
            items = parse_list(headers["x-switchyard-exposure"])
            assert [(str(f), p.get("variation")) for f, p in items] == \
                [(d["flag"], d["variation"]) for d in exp["decisions"]], (headers, exp)
        else:
            assert "x-switchyard-exposure" not in headers, headers
        assert headers.get("x-switchyard-cluster") in (exp["cluster"], None), headers
    # The sample covers a reject, a routed request and one no flag touches.
    assert kinds == {"reject", "routed", "untouched"}, kinds
