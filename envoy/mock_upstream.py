#!/usr/bin/env python3
"""Mock model upstreams for switchyard's Envoy tests and demo (Python standard library only).

One process serves several named clusters, each on its own loopback port, plus a control port.

Every cluster port answers any request like an OpenAI chat-completions endpoint:

    200 {"id": ..., "object": "chat.completion", "model": CLUSTER,
         "choices": [{"index": 0, "message": {"role": "assistant", "content": "..."}, ...}],
         "usage": {...},
         "mock": {"cluster": CLUSTER, "method": ..., "path": ..., "headers": {...},
                  "header_list": [[name, value], ...], "seq": N}}

with response headers `x-mock-cluster: CLUSTER` and `x-mock-seq: N`. Every request is logged.
Test controls on a request: `x-mock-status: N` answers with status N; `x-mock-fallback: 1`
adds `x-model-fallback: true` (a model gateway saying it fell back); `x-mock-delay-ms: N`
answers N milliseconds late (a slow model).

Control port (GET unless noted):
    /__mock/log            all logged requests, JSON list (optional ?cluster=NAME, ?since=SEQ)
    /__mock/counts         {"CLUSTER": count, ...}
    /__mock/seq            {"seq": N}: sequence number of the last logged request
    /__mock/reset  (POST)  forget the log
    /__mock/health         {"ok": true}

Start:
    python3 mock_upstream.py --clusters a,b,c [--host 127.0.0.1] [--ports-file FILE] [--log-file FILE.jsonl]

Ports are chosen free by the OS (or fixed with --port NAME=PORT, repeatable; --control-port N).
When everything listens, one JSON line {"control": PORT, "clusters": {NAME: PORT}} is printed on
standard output (and written to --ports-file if given).
"""
import argparse
import json
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Log:
    def __init__(self, log_file=None):
        self.lock = threading.Lock()
        self.entries = []
        self.seq = 0
        self.fh = open(log_file, "a", buffering=1) if log_file else None

    def add(self, entry):
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.entries.append(entry)
            if self.fh:
                self.fh.write(json.dumps(entry) + "\n")
            return self.seq

    def query(self, cluster=None, since=0):
        with self.lock:
            return [e for e in self.entries
                    if e["seq"] > since and (cluster is None or e["cluster"] == cluster)]

    def counts(self):
        out = {}
        with self.lock:
            for e in self.entries:
                out[e["cluster"]] = out.get(e["cluster"], 0) + 1
        return out

    def reset(self):
        with self.lock:
            self.entries = []


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def _send_json(handler, status, obj, extra_headers=()):
    body = json.dumps(obj).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    for k, v in extra_headers:
        handler.send_header(k, v)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def make_cluster_handler(cluster, log):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "switchyard-mock/1"
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus the
        # peer's delayed ACK would add ~40 ms to every kept-alive request.
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):  # quiet
            pass

        def _handle(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            header_list = [[k.lower(), v] for k, v in self.headers.items()]
            headers = {}
            for k, v in header_list:
                headers[k] = headers[k] + ", " + v if k in headers else v
            prompt = ""
            try:
                req = json.loads(body) if body else {}
                msgs = req.get("messages") or []
                if msgs and isinstance(msgs[-1], dict):
                    prompt = str(msgs[-1].get("content", ""))[:200]
            except (ValueError, AttributeError):
                pass
            entry = {
                "cluster": cluster,
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "header_list": header_list,
                "request_id": headers.get("x-request-id"),
                "body_bytes": len(body),
                "t": time.time(),
            }
            seq = log.add(entry)
            resp = {
                "id": "chatcmpl-mock-%s-%d" % (cluster, seq),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": cluster,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant",
                                "content": "[%s] mock answer to: %s" % (cluster, prompt)},
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 6,
                          "total_tokens": len(prompt.split()) + 6},
                "mock": dict(entry, seq=seq),
            }
            # Test controls, acting like a model gateway: `x-mock-status: N` answers with N,
            # `x-mock-fallback: 1` says (in x-model-fallback) that the gateway fell back.
            status = int(headers.get("x-mock-status") or 200)
            delay_ms = int(headers.get("x-mock-delay-ms") or 0)
            if delay_ms > 0:
                time.sleep(delay_ms / 1000)
            extra = [("x-mock-cluster", cluster), ("x-mock-seq", str(seq))]
            if headers.get("x-mock-fallback"):
                extra.append(("x-model-fallback", "true"))
            _send_json(self, status, resp, extra)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    return Handler


def make_control_handler(log, info):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):
            pass

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(u.query))
            if u.path == "/__mock/log":
                _send_json(self, 200, log.query(q.get("cluster"), int(q.get("since", 0))))
            elif u.path == "/__mock/counts":
                _send_json(self, 200, log.counts())
            elif u.path == "/__mock/seq":
                _send_json(self, 200, {"seq": log.seq})
            elif u.path == "/__mock/health":
                _send_json(self, 200, {"ok": True, **info})
            else:
                _send_json(self, 404, {"error": "unknown control path"})

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            if self.path == "/__mock/reset":
                log.reset()
                _send_json(self, 200, {"ok": True})
            else:
                _send_json(self, 404, {"error": "unknown control path"})

    return Handler


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", required=True, help="comma-separated cluster names")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", action="append", default=[], help="NAME=PORT (fixed port for a cluster)")
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--ports-file")
    ap.add_argument("--log-file", help="also append every logged request as a JSON line here")
    args = ap.parse_args(argv)

    fixed = dict(p.split("=", 1) for p in args.port)
    names = [c for c in (s.strip() for s in args.clusters.split(",")) if c]
    log = Log(args.log_file)
    servers = {}
    for name in names:
        servers[name] = Server((args.host, int(fixed.get(name, 0))), make_cluster_handler(name, log))
    info = {"clusters": {n: s.server_address[1] for n, s in servers.items()}}
    control = Server((args.host, args.control_port), make_control_handler(log, info))
    info["control"] = control.server_address[1]

    for s in list(servers.values()) + [control]:
        threading.Thread(target=s.serve_forever, daemon=True).start()

    line = json.dumps({"control": info["control"], "clusters": info["clusters"]})
    if args.ports_file:
        tmp = args.ports_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(line + "\n")
        import os
        os.replace(tmp, args.ports_file)
    print(line, flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    for s in list(servers.values()) + [control]:
        s.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
