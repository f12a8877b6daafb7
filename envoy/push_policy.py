#!/usr/bin/env python3
"""Push a switchyard policy to a running Envoy that takes the filter's configuration from a
watched file (ECDS with path_config_source; see examples/dynamic-ecds/README.md).

    python3 envoy/push_policy.py NEW_POLICY.json --to /etc/envoy/switchyard/switchyard.yml \\
        [--wasm PATH] [--admin http://127.0.0.1:9901] [--timeout 10] [--cli PATH] [--no-check]
    python3 envoy/push_policy.py POLICY.json --wasm PATH --stdout   # print the resource only

Steps:
 1. `switchyard check NEW_POLICY` (the CLI, target/release/switchyard by default): a policy it
    rejects is never written (--no-check skips this; Envoy would reject it anyway).
 2. Against the running Envoy (--admin, required unless --unchecked): every cluster the policy
    names (variations, `source`, `consent_source`) must exist (/clusters), and the policy's
    route header must be one Envoy's routes read with `cluster_header` (/config_dump), else the
    push is refused: routing to an unknown cluster answers 503, and a route header no route
    reads sends every flagged request, consent fallbacks included, to the default route.
 3. The ECDS resource (a DiscoveryResponse holding the Wasm filter config with the policy as its
    StringValue, version_info = the policy's version) is written to a temporary file in the
    target's directory, fsync'ed, then renamed over the target. Envoy's watch fires on the
    rename (a move into the watched directory), so it never reads a half-written file.
 4. With --admin: wait until Envoy has processed the update and report whether it was accepted
    (extension_config_discovery.http_filter.NAME.update_success, with version_text the pushed
    version) or rejected (update_rejected; Envoy keeps serving the previous policy; the reason
    is in Envoy's log as `switchyard: policy rejected: ...`). After a rejection, or when no
    verdict comes (timeout, admin unreachable), the previous file is put back (atomically
    again; a first push's file is removed; --no-rollback leaves it), so the file on disk is
    what Envoy serves and what an Envoy restarted later would load.

A policy under which units would flip between variations, compared with the policy in the
current resource file (`switchyard compare`: requests moving both ways between two variations of
a flag, as a reordered split or a changed salt makes them), is refused (1) unless --allow-flips
is given; what the push changes is printed either way (--no-check skips this too).

A policy that drops or changes the `source` or `consent_source` of the policy in the current
resource file is refused (1) unless --change-sources is given: the documents fetched from a
dropped source stop applying at once, so a push made from an old copy of the policy would undo
every opt-out recorded at the consent source.

The Wasm file path is taken from --wasm, else from the current resource file. Exit status: 0
pushed (and, with --admin, accepted), 1 refused before writing, 3 rejected by Envoy, 4 no
verdict from Envoy within --timeout; an admin endpoint that does not answer before the write
is a refusal (1). Standard library only, but it needs its neighbours: copy `push_policy.py`,
`genconfig.py` and `bootstrap.yaml.tmpl` from envoy/ together.
"""
import argparse
import http.client
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


def policy_from_resource(path):
    """The policy text inside an existing resource file (the `value: |` block genconfig
    writes); None if there is no file or no such block."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError:
        return None
    for i, line in enumerate(lines):
        m = re.match(r'^(\s*)value: \|[-+]?\s*$', line)
        if not m:
            continue
        indent = len(m.group(1))
        body = []
        for follow in lines[i + 1:]:
            if follow.strip() and len(follow) - len(follow.lstrip(" ")) <= indent:
                break
            body.append(follow)
        cut = min((len(b) - len(b.lstrip(" ")) for b in body if b.strip()), default=0)
        return "\n".join(b[cut:] for b in body).strip() + "\n"
    return None


def unit_flips(cli, current_text, new_path):
    """`switchyard compare` of the policy in force with the new one: the flips it found, as
    phrases ("FLAG: a <-> b"), and what moves, one line per flag and move. A current policy
    that no longer loads (an old file from another version) compares nothing."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        f.write(current_text)
        current_path = f.name
    try:
        p = subprocess.run([cli, "compare", current_path, new_path, "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    finally:
        os.remove(current_path)
    if p.returncode != 0:
        return [], ""
    report = json.loads(p.stdout)
    lines = ["push_policy: compared with the policy in force over %d requests:" % report["requests"]]
    for f in report["flags"]:
        lines.append("  %s: %d of %d in-scope requests change"
                     % (f["flag"], f["changed"], f["in_scope"]))
        lines += ["    %s -> %s: %d" % (m["from"], m["to"], m["count"]) for m in f["moves"]]
    flips = ["%s: %s <-> %s" % (f["flag"], a, b)
             for f in report["flags"] for a, b in f["both_ways"]]
    return flips, "\n".join(lines) + "\n"


def source_changes(old_text, new_text):
    """`source`/`consent_source` the new policy drops or changes, as phrases."""
    try:
        old, new = json.loads(old_text), json.loads(new_text)
    except ValueError:
        return []
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    out = []
    for name in ("source", "consent_source"):
        if name in old and name not in new:
            out.append("drops %s (%s)" % (name, json.dumps(old[name], sort_keys=True)))
        elif name in old and old[name] != new[name]:
            out.append("changes %s" % name)
    return out


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


def wait_for_update(admin_url, before, timeout=10, name=genconfig.ECDS_NAME, version=None):
    """Wait until Envoy has processed one more ECDS update than in `before` (ecds_counters) and,
    if `version` is given, serves that version_text; returns ("accepted" | "rejected" |
    "timeout", counters)."""
    deadline = time.time() + timeout
    while True:
        now = ecds_counters(admin_url, name)
        if now.get("update_rejected", 0) > before.get("update_rejected", 0) or \
                now.get("update_failure", 0) > before.get("update_failure", 0):
            return "rejected", now
        if now.get("update_success", 0) > before.get("update_success", 0) and \
                (version is None or now.get("version_text") == version):
            return "accepted", now
        if time.time() > deadline:
            return "timeout", now
        time.sleep(0.02)


def route_headers(admin_url):
    """The headers Envoy's routes read with `cluster_header` (/config_dump)."""
    with urllib.request.urlopen(admin_url.rstrip("/") + "/config_dump", timeout=5) as r:
        dump = r.read().decode()
    return set(re.findall(r'"cluster_header":\s*"([^"]*)"', dump))


def envoy_clusters(admin_url):
    with urllib.request.urlopen(admin_url.rstrip("/") + "/clusters?format=json", timeout=5) as r:
        doc = json.loads(r.read())
    return {c.get("name") for c in doc.get("cluster_statuses", [])}


def check_against_envoy(args, policy_text):
    """(why the running Envoy cannot take the policy or None, its ECDS counters now)."""
    named = genconfig.policy_clusters(policy_text) + genconfig.policy_source_clusters(policy_text)
    known = envoy_clusters(args.admin)
    missing = [c for c in dict.fromkeys(named) if c not in known]
    if missing:
        return "Envoy has no cluster(s) %s named by the policy" % ", ".join(missing), None
    route_header = genconfig.policy_route_header(policy_text)
    read = route_headers(args.admin)
    if read and route_header not in read:
        return ("the policy sets its route header to %s, but Envoy's routes read %s"
                % (route_header, ", ".join(sorted(read)))), None
    return None, ecds_counters(args.admin, args.name)


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
    ap.add_argument("--allow-flips", action="store_true", help="allow a policy under which "
                    "units move both ways between two variations (switchyard compare)")
    ap.add_argument("--change-sources", action="store_true", help="allow a policy that drops "
                    "or changes the current policy's source or consent_source")
    ap.add_argument("--admin", metavar="URL", help="Envoy admin address, e.g. "
                    "http://127.0.0.1:9901: check clusters first, then wait for Envoy's verdict")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--no-rollback", action="store_true", help="with --admin: leave a file "
                    "Envoy rejected (or gave no verdict on) in place (default: put the previous "
                    "file back)")
    ap.add_argument("--unchecked", action="store_true", help="write without --admin: no "
                    "cluster or route-header check against Envoy, no verdict")
    args = ap.parse_args(argv)
    if not args.to and not args.stdout:
        ap.error("give --to FILE (or --stdout)")
    if args.to and not args.admin and not args.unchecked:
        ap.error("give --admin URL, so the policy is checked against the running Envoy and its "
                 "verdict awaited (or --unchecked to write without either)")

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
    current = policy_from_resource(args.to) if args.to else None
    if current and not args.no_check:
        flips, report = unit_flips(args.cli, current, args.policy)
        sys.stdout.write(report)
        if flips and not args.allow_flips:
            print("push_policy: units would flip between variations (%s): a reordered split or "
                  "a changed salt moves some units both ways; if that is intended, give "
                  "--allow-flips; nothing written" % "; ".join(flips), file=sys.stderr)
            return 1
    changes = source_changes(current, policy_text) if current else []
    if changes and not args.change_sources:
        print("push_policy: %s %s that the policy in %s has: what was fetched from there stops "
              "applying at once (fetched opt-outs and kill switches are undone); keep it, or "
              "give --change-sources; nothing written"
              % (args.policy, " and ".join(changes), args.to), file=sys.stderr)
        return 1
    text = genconfig.render_ecds_resource(policy_text, wasm, args.name, args.version_info)
    if args.stdout:
        sys.stdout.write(text)
        return 0

    before = None
    if args.admin:
        try:
            refusal, before = check_against_envoy(args, policy_text)
        except (OSError, ValueError, http.client.HTTPException) as e:
            # URLError is an OSError, bad JSON a ValueError, a non-HTTP answer an HTTPException
            refusal = "cannot read Envoy's admin endpoint %s (%s)" % (args.admin, e)
        if refusal:
            print("push_policy: %s; nothing written" % refusal, file=sys.stderr)
            return 1
    try:
        with open(args.to, encoding="utf-8") as f:
            previous = f.read()
    except OSError:
        previous = None
    write_atomic(args.to, text)
    version = args.version_info or genconfig.policy_version(policy_text)
    print("push_policy: wrote %s (policy version %s)" % (args.to, version))
    if not args.admin:
        return 0
    try:
        verdict, now = wait_for_update(args.admin, before, args.timeout, args.name, version)
    except (OSError, ValueError) as e:
        verdict, now = "unreachable: %s" % e, {}
    if verdict == "accepted":
        print("push_policy: Envoy accepted it (version_text %s)" % now.get("version_text"))
        return 0
    if verdict == "rejected":
        print("push_policy: Envoy REJECTED it and keeps serving version %s; see Envoy's log "
              "(`switchyard: policy rejected: ...`)" % now.get("version_text"), file=sys.stderr)
    else:
        print("push_policy: no verdict from Envoy within %ss (%s; is --to the file Envoy "
              "watches?)" % (args.timeout, verdict), file=sys.stderr)
    if not args.no_rollback:
        restore(args, previous)
    return 3 if verdict == "rejected" else 4


def restore(args, previous):
    """Puts the previous file back (or removes a first push's), so what is on disk is what
    Envoy serves and what a restarted Envoy would load. Re-reading an identical resource
    changes nothing in Envoy."""
    try:
        if previous is None:
            os.remove(args.to)
            print("push_policy: removed %s (there was no previous file)" % args.to,
                  file=sys.stderr)
            return
        before = ecds_counters(args.admin, args.name)
        write_atomic(args.to, previous)
        verdict, _ = wait_for_update(args.admin, before, args.timeout, args.name)
        print("push_policy: restored the previous %s (%s)" % (args.to, verdict),
              file=sys.stderr)
    except (OSError, ValueError) as e:
        print("push_policy: could not restore the previous %s: %s" % (args.to, e),
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
