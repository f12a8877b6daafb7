#!/usr/bin/env python3
"""A mock policy server for switchyard's remote sources (`source`, `consent_source`).

    python3 envoy/policy_server.py --policy examples/support-copilot/policy.json \\
        [--consent consent.json] [--host 127.0.0.1] [--port 0] [--ports-file FILE]

Serves, on one loopback port:

  GET /policy.json     the policy document          (ETag: "<sha256 prefix>"; If-None-Match -> 304)
  GET /consent.json    the consent document {"tenants": {...}}   (same; 404 until one is set)

and a control API for tests (same port):

  PUT  /__control/policy    body = new policy text (served verbatim from now on)
  PUT  /__control/consent   body = new consent text
  PUT  /__control/status    body = {"path": "/policy.json", "status": 503} (answer that status; 0 = normal)
  GET  /__control/log       [{"t": unix time, "path", "status", "if_none_match"}] of every GET served
  GET  /__control/state     {"policy_etag", "consent_etag", "requests"}

Every response to a control PUT carries the new ETag, and the server records the time the new
document became visible (`changed_at`), so a test can measure from the moment of the change.
Standard library only.
"""
import argparse
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOCS = {"/policy.json": "policy", "/consent.json": "consent"}


class State:
    def __init__(self, policy=None, consent=None):
        self.lock = threading.Lock()
        self.docs = {}
        self.status = {}
        self.log = []
        if policy is not None:
            self.set("policy", policy)
        if consent is not None:
            self.set("consent", consent)

    def set(self, name, text):
        body = text.encode() if isinstance(text, str) else text
        etag = '"%s"' % hashlib.sha256(body).hexdigest()[:16]
        with self.lock:
            self.docs[name] = (body, etag, time.time())
        return etag


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "switchyard-policy-server"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        st = self.server.state
        path = self.path.split("?", 1)[0]
        if path == "/__control/log":
            with st.lock:
                data = json.dumps(st.log).encode()
            return self._send(200, data, [("Content-Type", "application/json")])
        if path == "/__control/state":
            with st.lock:
                data = json.dumps({
                    "policy_etag": st.docs.get("policy", (None, None))[1],
                    "consent_etag": st.docs.get("consent", (None, None))[1],
                    "requests": len(st.log)}).encode()
            return self._send(200, data, [("Content-Type", "application/json")])
        name = DOCS.get(path)
        inm = self.headers.get("If-None-Match")
        with st.lock:
            forced = st.status.get(path, 0)
            doc = st.docs.get(name) if name else None
        if forced:
            status, body, headers = forced, b'{"error": "forced"}', [("Content-Type", "application/json")]
        elif doc is None:
            status, body, headers = 404, b"", []
        else:
            body, etag, _ = doc
            headers = [("ETag", etag), ("Content-Type", "application/json"),
                       ("Cache-Control", "no-cache")]
            if inm is not None and etag in [t.strip() for t in inm.split(",")]:
                status, body = 304, b""
            else:
                status = 200
        with st.lock:
            st.log.append({"t": time.time(), "path": path, "status": status,
                           "if_none_match": inm})
        self._send(status, body, headers)

    def do_PUT(self):
        st = self.server.state
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        path = self.path.split("?", 1)[0]
        if path in ("/__control/policy", "/__control/consent"):
            etag = st.set(path.rsplit("/", 1)[1], body)
            return self._send(200, json.dumps({"etag": etag}).encode(),
                              [("Content-Type", "application/json")])
        if path == "/__control/status":
            spec = json.loads(body or b"{}")
            with st.lock:
                st.status[spec["path"]] = int(spec.get("status") or 0)
            return self._send(200, b"{}")
        self._send(404)

    do_POST = do_PUT


def serve(policy=None, consent=None, host="127.0.0.1", port=0):
    """Start in a thread; returns the server (server.server_address[1] is the port)."""
    srv = ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    srv.state = State(policy, consent)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", help="policy file served at /policy.json")
    ap.add_argument("--consent", help="consent file served at /consent.json")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ports-file", help="write {\"port\": N} here once listening")
    args = ap.parse_args(argv)

    def read(p):
        if not p:
            return None
        with open(p, "rb") as f:
            return f.read()

    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    srv.daemon_threads = True
    srv.state = State(read(args.policy), read(args.consent))
    port = srv.server_address[1]
    if args.ports_file:
        tmp = args.ports_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"port": port}, f)
        os.replace(tmp, args.ports_file)
    print("policy server on %s:%d" % (args.host, port), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
