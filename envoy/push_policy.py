#!/usr/bin/env python3
"""Push a switchyard policy to a running Envoy that takes the filter's configuration from a
watched file (ECDS with path_config_source; see examples/dynamic-ecds/README.md).

    python3 envoy/push_policy.py NEW_POLICY.json --to /etc/envoy/switchyard/switchyard.yml \\
        [--wasm PATH] [--admin http://127.0.0.1:9901] [--timeout 10] [--cli PATH] [--no-check]
    python3 envoy/push_policy.py POLICY.json --wasm PATH --stdout   # print the resource only

Steps:
 1. `switchyard check NEW_POLICY` (the CLI, target/release/switchyard by default): a policy it
    rejects is never written (--no-check skips this; Envoy would reject it anyway).
 2. With --admin: every cluster the policy names must exist in that Envoy (/clusters), else the
    push is refused: routing to an unknown cluster would answer 503 for those requests.
 3. The ECDS resource (a DiscoveryResponse holding the Wasm filter config with the policy as its
    StringValue, version_info = the policy's version) is written to a temporary file in the
    target's directory, fsync'ed, then renamed over the target. Envoy's watch fires on the
    rename (a move into the watched directory), so it never reads a half-written file.
 4. With --admin: wait until Envoy has processed the update and report whether it was accepted
    (extension_config_discovery.http_filter.NAME.update_success / version_text) or rejected
    (update_rejected; Envoy keeps serving the previous policy; the reason is in Envoy's log as
    `switchyard: policy rejected: ...`). After a rejection the previous file is put back
    (atomically again; --no-rollback leaves the rejected one), so the file on disk is what Envoy
    serves and what an Envoy restarted later would load.

The Wasm file path is taken from --wasm, else from the current resource file. Exit status: 0
pushed (and, with --admin, accepted), 1 refused before writing, 3 rejected by Envoy, 4 no answer
from Envoy within --timeout. Standard library only.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import genconfig  # noqa: E402

DEFAULT_CLI = os.environ.get("SWITCHYARD_CLI") or os.path.join(
    os.path.dirname(HERE), "target", "release", "switchyard")
COUNTERS = ("update_attempt", "update_success", "update_rejected", "update_failure",
            "config_reload", "config_fail")


def write_atomic(path, text):
    """Replace `path` with `text` atomically: temp file in the same directory, fsync, rename,
    fsync the directory. Returns time.time() just after the rename."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
        t = time.time()
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return t


def wasm_from_resource(path):
    """The Wasm filename named in an existing resource file (None if there is none)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r'^\s*filename:\s*(.+?)\s*$', text, re.M)
    if not m:
        return None
    v = m.group(1)
    return json.loads(v) if v.startswith('"') else v.strip("'")


def ecds_counters(admin_url, name=genconfig.ECDS_NAME):
    """{counter: value} of extension_config_discovery.http_filter.NAME.*, plus version_text."""
    prefix = "extension_config_discovery.http_filter.%s." % name
    with urllib.request.urlopen(admin_url.rstrip("/") + "/stats?filter=extension_config_discovery",
                                timeout=5) as r:
        body = r.read().decode()
    out = {}
    for line in body.splitlines():
        k, sep, v = line.partition(": ")
        if sep and k.startswith(prefix):
            k = k[len(prefix):]
            v = v.strip()
            if k == "version_text":
                out[k] = v.strip('"')
            elif v.isdigit():
                out[k] = int(v)
    return out


def wait_for_update(admin_url, before, timeout=10, name=genconfig.ECDS_NAME):
    """Wait until Envoy has processed one more ECDS update than in `before` (ecds_counters);
    returns ("accepted" | "rejected" | "timeout", counters)."""
    deadline = time.time() + timeout
    while True:
        now = ecds_counters(admin_url, name)
        if now.get("update_rejected", 0) > before.get("update_rejected", 0) or \
                now.get("update_failure", 0) > before.get("update_failure", 0):
            return "rejected", now
        if now.get("update_success", 0) > before.get("update_success", 0):
            return "accepted", now
        if time.time() > deadline:
            return "timeout", now
        time.sleep(0.02)


def envoy_clusters(admin_url):
    with urllib.request.urlopen(admin_url.rstrip("/") + "/clusters?format=json", timeout=5) as r:
        doc = json.loads(r.read())
    return {c.get("name") for c in doc.get("cluster_statuses", [])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("policy", help="the new policy (JSON)")
    ap.add_argument("--to", metavar="FILE", help="the ECDS resource file Envoy watches")
    ap.add_argument("--stdout", action="store_true", help="print the resource, write nothing")
    ap.add_argument("--wasm", help="switchyard_plugin.wasm path as Envoy should read it "
                                   "(default: the one in the current --to file)")
    ap.add_argument("--name", default=genconfig.ECDS_NAME, help="ECDS resource name (default "
                    "%(default)s; must equal the filter name in the listener)")
    ap.add_argument("--version-info", help="DiscoveryResponse version_info (default: the "
                                           "policy's version)")
    ap.add_argument("--cli", default=DEFAULT_CLI, help="switchyard CLI (default %(default)s)")
    ap.add_argument("--no-check", action="store_true", help="skip `switchyard check`")
    ap.add_argument("--admin", metavar="URL", help="Envoy admin address, e.g. "
                    "http://127.0.0.1:9901: check clusters first, then wait for Envoy's verdict")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--no-rollback", action="store_true", help="with --admin: leave a file "
                    "Envoy rejected in place (default: put the previous file back)")
    args = ap.parse_args(argv)
    if not args.to and not args.stdout:
        ap.error("give --to FILE (or --stdout)")

    with open(args.policy, encoding="utf-8") as f:
        policy_text = f.read()
    wasm = args.wasm or (wasm_from_resource(args.to) if args.to else None)
    if not wasm:
        ap.error("no --wasm, and no current resource file to take the Wasm path from")

    if not args.no_check:
        p = subprocess.run([args.cli, "check", args.policy], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            sys.stderr.write(p.stderr.decode("utf-8", "replace"))
            print("push_policy: `switchyard check` rejected %s; nothing written" % args.policy,
                  file=sys.stderr)
            return 1
    text = genconfig.render_ecds_resource(policy_text, wasm, args.name, args.version_info)
    if args.stdout:
        sys.stdout.write(text)
        return 0

    before = None
    if args.admin:
        missing = [c for c in genconfig.policy_clusters(policy_text)
                   if c not in envoy_clusters(args.admin)]
        if missing:
            print("push_policy: Envoy has no cluster(s) %s named by the policy; nothing written"
                  % ", ".join(missing), file=sys.stderr)
            return 1
        before = ecds_counters(args.admin, args.name)
    try:
        with open(args.to, encoding="utf-8") as f:
            previous = f.read()
    except OSError:
        previous = None
    write_atomic(args.to, text)
    print("push_policy: wrote %s (policy version %s)"
          % (args.to, genconfig.policy_version(policy_text)))
    if not args.admin:
        return 0
    verdict, now = wait_for_update(args.admin, before, args.timeout, args.name)
    if verdict == "accepted":
        print("push_policy: Envoy accepted it (version_text %s)" % now.get("version_text"))
        return 0
    if verdict == "rejected":
        print("push_policy: Envoy REJECTED it and keeps serving version %s; see Envoy's log "
              "(`switchyard: policy rejected: ...`)" % now.get("version_text"), file=sys.stderr)
        if previous is not None and not args.no_rollback:
            # Put the file back, so what is on disk is what Envoy serves (and what a restarted
            # Envoy would load). Re-reading an identical resource changes nothing in Envoy.
            before = ecds_counters(args.admin, args.name)
            write_atomic(args.to, previous)
            verdict2, _ = wait_for_update(args.admin, before, args.timeout, args.name)
            print("push_policy: restored the previous %s (%s)" % (args.to, verdict2),
                  file=sys.stderr)
        return 3
    print("push_policy: no update seen within %ss (is --to the file Envoy watches?)"
          % args.timeout, file=sys.stderr)
    return 4


if __name__ == "__main__":
    sys.exit(main())
