#!/usr/bin/env python3
"""Render an Envoy bootstrap that runs the switchyard filter with a given policy.

    python3 envoy/genconfig.py --policy examples/support-copilot/policy.json \\
        --wasm target/wasm32-wasip1/release/switchyard_plugin.wasm \\
        --upstream support_model_a=127.0.0.1:18001 ... --default-upstream 127.0.0.1:18000 \\
        [--all-upstreams 127.0.0.1:18000] [--listener-port 10000] [--admin-port 9901] \\
        [--access-log /dev/stdout] [-o envoy.yaml]

The template is envoy/bootstrap.yaml.tmpl. The policy text is embedded verbatim as the plugin's
google.protobuf.StringValue configuration (also when it is not valid JSON: Envoy, i.e. the filter,
is the one to reject it). One static cluster is emitted for every cluster named by a policy
variation, plus `default_upstream` (traffic that no flag routes). Standard library only.

With --ecds-path FILE the filter is declared with `config_discovery` (ECDS from FILE, a watched
path_config_source) instead of inline, so the policy can be changed at runtime; FILE itself is
rendered by render_ecds_resource() (or envoy/push_policy.py). See examples/dynamic-ecds/.
"""
import argparse
import json
import os
import re
import string
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "bootstrap.yaml.tmpl")
DEFAULT_ROUTE_HEADER = "x-switchyard-cluster"
DEFAULT_CLUSTER = "default_upstream"
# Indentation of the `value:` key of the StringValue in the template (its content goes 2 deeper).
_VALUE_INDENT = 18


def policy_clusters(policy_text):
    """Cluster names referenced by the policy's variations, in document order (best effort:
    an unparsable policy yields [])."""
    try:
        doc = json.loads(policy_text)
    except ValueError:
        return []
    out = []
    flags = doc.get("flags") if isinstance(doc, dict) else None
    for flag in flags if isinstance(flags, list) else []:
        variations = flag.get("variations") if isinstance(flag, dict) else None
        if not isinstance(variations, dict):
            continue
        for v in variations.values():
            c = v.get("cluster") if isinstance(v, dict) else None
            if isinstance(c, str) and c and c not in out:
                out.append(c)
    return out


def policy_route_header(policy_text):
    """The route header the policy asks for (`settings.route_header`), else
    x-switchyard-cluster."""
    try:
        doc = json.loads(policy_text)
    except ValueError:
        return DEFAULT_ROUTE_HEADER
    settings = doc.get("settings") if isinstance(doc, dict) else None
    v = settings.get("route_header") if isinstance(settings, dict) else None
    return v.lower() if isinstance(v, str) and v else DEFAULT_ROUTE_HEADER


def _printable(ch):
    o = ord(ch)
    # YAML's printable set, less the characters some parsers take as line breaks.
    return ch in "\t\n" or (0x20 <= o <= 0x7E) or (0xA0 <= o <= 0xD7FF and o not in (
        0x2028, 0x2029)) or (0xE000 <= o <= 0xFFFD and o != 0xFEFF) or (0x10000 <= o <= 0x10FFFF)


def yaml_string(text, indent=_VALUE_INDENT):
    """A YAML scalar (to follow `key: ` whose key is at column `indent`) that reads back as
    exactly `text`. A literal block when that is safe, else a double-quoted string."""
    lines = text.split("\n")
    body = lines[:-1] if text.endswith("\n") else lines
    block_ok = (
        text.strip() != ""
        and all(_printable(c) for c in text)
        and body and body[0] != "" and not body[0][0].isspace()
        and all(line == line.rstrip(" \t") for line in body)
        and "\t" not in "".join(line[:1] for line in body)
    )
    if block_ok:
        stripped = text.rstrip("\n")
        trailing = len(text) - len(stripped)
        chomp = "-" if trailing == 0 else ("" if trailing == 1 else "+")
        pad = " " * (indent + 2)
        content = "\n".join(pad + line if line else "" for line in stripped.split("\n"))
        extra = "\n" * (trailing - 1) if trailing > 1 else ""
        return "|" + chomp + "\n" + content + extra
    out = []
    for ch in json.dumps(text, ensure_ascii=False)[1:-1]:
        out.append(ch if _printable(ch) else "\\u%04x" % ord(ch) if ord(ch) <= 0xFFFF
                   else "\\U%08x" % ord(ch))
    return '"' + "".join(out) + '"'


# ---- The policy as a google.protobuf.Struct ---------------------------------------------------
# Envoy hands a Struct configuration to the filter as serialized protobuf, which the filter
# decodes back to JSON (plugin/src/struct_config.rs): the policy can then be written as YAML.
_STRING_VALUE_TYPE = '"@type": type.googleapis.com/google.protobuf.StringValue'
_STRUCT_TYPE = '"@type": type.googleapis.com/google.protobuf.Struct'
_VERBATIM_COMMENT = "# The policy document, verbatim, as the plugin configuration."
_STRUCT_COMMENT = ("# The policy document as YAML (a google.protobuf.Struct; strings are quoted so "
                   "YAML\n{pad}# cannot read `on`, `no` or a date as something else).")
_STRUCT_MARK = "@@switchyard-policy@@"  # stands for the value until struct_config() writes it
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Plain words YAML 1.1 reads as booleans or null: quoted when they are keys.
_YAML_WORDS = {"y", "yes", "n", "no", "on", "off", "true", "false", "null", "~"}


def _yaml_quoted(text):
    """A double-quoted YAML scalar that reads back as exactly `text`."""
    out = []
    for ch in json.dumps(text, ensure_ascii=False)[1:-1]:
        out.append(ch if _printable(ch) else "\\u%04x" % ord(ch) if ord(ch) <= 0xFFFF
                   else "\\U%08x" % ord(ch))
    return '"' + "".join(out) + '"'


def _yaml_scalar(value):
    if isinstance(value, str):
        return _yaml_quoted(value)
    if isinstance(value, (dict, list)):  # only empty ones get here
        return "{}" if isinstance(value, dict) else "[]"
    text = json.dumps(value)  # numbers, true, false, null
    if isinstance(value, float) and "e" in text and "." not in text:
        text = text.replace("e", ".0e")  # YAML 1.1 reads 1e+300 as a string, 1.0e+300 as a float
    return text


def _yaml_key(key):
    return key if _PLAIN_KEY.match(key) and key.lower() not in _YAML_WORDS else _yaml_quoted(key)


def yaml_block(value, indent):
    """Lines of block YAML for a JSON value (an object or a list) at `indent` spaces; a list of
    scalars is written inline (`["pro", "enterprise"]`). Every string is quoted."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, v in value.items():
            head = pad + _yaml_key(key) + ":"
            if isinstance(v, (dict, list)) and v and not _scalar_list(v):
                lines.append(head)
                lines += yaml_block(v, indent + 2)
            else:
                lines.append(head + " " + _yaml_flow(v))
        return lines
    for v in value:
        if isinstance(v, (dict, list)) and v and not _scalar_list(v):
            sub = yaml_block(v, indent + 2)
            lines.append(pad + "- " + sub[0][indent + 2:])
            lines += sub[1:]
        else:
            lines.append(pad + "- " + _yaml_flow(v))
    return lines


def _scalar_list(v):
    return isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v)


def _yaml_flow(v):
    if _scalar_list(v):
        return "[" + ", ".join(_yaml_scalar(x) for x in v) + "]"
    return _yaml_scalar(v)


def struct_config(text, policy_text):
    """`text` (a rendered bootstrap) with its inline policy given as a google.protobuf.Struct,
    written as YAML, instead of a StringValue. The policy must be a JSON object."""
    doc = json.loads(policy_text)
    if not isinstance(doc, dict):
        raise ValueError("a Struct configuration must be a JSON object")
    a = text.index(_STRING_VALUE_TYPE)
    line_start = text.rindex("\n", 0, a) + 1
    indent = a - line_start
    b = text.index("\n", text.index("value: " + _STRUCT_MARK, a))
    pad = " " * indent
    block = "\n".join(yaml_block(doc, indent + 2))
    text = text[:line_start] + pad + _STRUCT_TYPE + "\n" + pad + "value:\n" + block + text[b:]
    return text.replace(_VERBATIM_COMMENT, _STRUCT_COMMENT.format(pad=pad[:-2]), 1)


def _hostport(s):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("expected HOST:PORT, got %r" % s)
    return host, int(port)


def render_clusters(upstreams):
    """upstreams: ordered {cluster_name: (host, port)}."""
    parts = []
    for name, (host, port) in upstreams.items():
        q = json.dumps(name)
        parts.append(
            "  - name: {q}\n"
            "    type: STATIC\n"
            "    connect_timeout: 2s\n"
            "    load_assignment:\n"
            "      cluster_name: {q}\n"
            "      endpoints:\n"
            "      - lb_endpoints:\n"
            "        - endpoint:\n"
            "            address:\n"
            "              socket_address: {{address: {h}, port_value: {p}}}".format(
                q=q, h=json.dumps(host), p=int(port)))
    return "\n".join(parts)


# ---- ECDS (dynamic policy) ------------------------------------------------------------------
# With ECDS the listener declares the filter by name only; its whole configuration (the Wasm
# filter config with the policy) is a TypedExtensionConfig resource in a file that Envoy watches.
ECDS_NAME = "switchyard"
WASM_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
_STATIC_FILTER_START = "          - name: envoy.filters.http.wasm\n"
_STATIC_FILTER_END = "          - name: envoy.filters.http.router\n"
_ECDS_FILTER = """\
          # The switchyard filter, configured by ECDS from a file: Envoy re-reads $ecds_path
          # whenever a file is moved into $ecds_dir (write a temp file there, then rename it
          # over the old one). A rejected update (bad policy: the filter's on_configure says no)
          # leaves the previous policy serving. See examples/dynamic-ecds/README.md.
          - name: $ecds_name
            config_discovery:
              config_source:
                resource_api_version: V3
                path_config_source:
                  path: $ecds_path
                  watched_directory:
                    path: $ecds_dir
              type_urls:
              - %s
""" % WASM_TYPE_URL
# The resource file: the Wasm filter's typed_config is taken from the static filter in the
# template (one source of truth for vm_config, failure_policy, ...), re-indented under
# `typed_config:` of a TypedExtensionConfig.
_RESOURCE_HEAD = """\
# ECDS resource: the switchyard filter's configuration, policy inline.
# Read by Envoy through path_config_source (see the bootstrap's config_discovery). Replace it
# atomically (temp file in the same directory, then rename), e.g. with envoy/push_policy.py.
version_info: $version_info
resources:
- "@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  name: $ecds_name
  typed_config:
"""
_RESOURCE_BODY_INDENT = 4        # typed_config's content in the resource
_TEMPLATE_BODY_INDENT = 14       # typed_config's content in the template's static filter


def _template_text():
    with open(TEMPLATE) as f:
        return "".join(line for line in f.readlines() if not line.startswith("#!"))


def ecds_resource_template():
    """string.Template text of the ECDS resource file ($version_info, $ecds_name, $wasm_path,
    $policy_value), its Wasm config cut from the static filter in bootstrap.yaml.tmpl."""
    text = _template_text()
    a = text.index(_STATIC_FILTER_START)
    b = text.index(_STATIC_FILTER_END, a)
    lines = text[a:b].rstrip("\n").split("\n")
    i = next(k for k, line in enumerate(lines) if line.strip() == "typed_config:")
    shift = _TEMPLATE_BODY_INDENT - _RESOURCE_BODY_INDENT
    body = []
    for line in lines[i + 1:]:
        if line.strip():
            if line[:_TEMPLATE_BODY_INDENT].strip():
                raise ValueError("unexpected indentation in the template's wasm filter: %r"
                                 % line)
            line = line[shift:]
        body.append(line)
    return _RESOURCE_HEAD + "\n".join(body) + "\n"


def policy_version(policy_text):
    """The policy's `version` (best effort: "unknown" when there is none)."""
    try:
        v = json.loads(policy_text).get("version")
    except (ValueError, AttributeError):
        v = None
    return v if isinstance(v, str) and v else "unknown"


def render_ecds_resource(policy_text, wasm_path, name=ECDS_NAME, version_info=None):
    """The ECDS resource file (a DiscoveryResponse in YAML) holding the switchyard filter's
    Wasm configuration with `policy_text` verbatim as its StringValue. `version_info` (default:
    the policy's version) shows in the stat extension_config_discovery.http_filter.NAME.version_text."""
    return string.Template(ecds_resource_template()).substitute(
        version_info=json.dumps(version_info or policy_version(policy_text)),
        ecds_name=json.dumps(name),
        wasm_path=json.dumps(wasm_path),
        policy_value=yaml_string(policy_text,
                                 _VALUE_INDENT - (_TEMPLATE_BODY_INDENT - _RESOURCE_BODY_INDENT)),
    )


def render(policy_text, wasm_path, upstreams, default_upstream=None, listener_port=10000,
           admin_port=9901, access_log_path="/dev/stdout", route_header=None,
           listen_address="127.0.0.1", admin_address="127.0.0.1", node_id="local",
           extra_clusters=(), ecds_path=None, ecds_watch_dir=None, ecds_name=ECDS_NAME,
           event_log_path=None, node_metadata=None, policy_as="string", evidence_logs=True):
    """Return the bootstrap YAML text.

    upstreams: {cluster: (host, port)} for the policy's clusters (missing ones raise);
    default_upstream: (host, port) for `default_upstream` (defaults to the first upstream);
    extra_clusters: more cluster names to emit (must be in upstreams);
    ecds_path: if given, the filter is declared with config_discovery from this file (ECDS,
    see render_ecds_resource) instead of inline, watching ecds_watch_dir (default: the file's
    directory); policy_text then only decides the clusters, route header (and wasm_path is
    unused);
    event_log_path: where the exposure events go, one JSON line per decided request (default:
    access_log_path + ".events", or /dev/null when the access log is a /dev path);
    node_metadata: {key: string} for the bootstrap's node.metadata (switchyard reads
    switchyard_environment and switchyard_pseudonym_key there);
    policy_as: "string" (the policy text verbatim, a google.protobuf.StringValue) or "struct"
    (the policy written as YAML, a google.protobuf.Struct; not with ecds_path);
    evidence_logs: False leaves out what logs the filter state (the access log's `exposure`
    field and the event log), for a policy with the lean settings, which writes none.
    The clusters a policy's `source`/`consent_source` name are emitted too (their addresses
    must be in upstreams)."""
    if event_log_path is None:
        event_log_path = ("/dev/null" if access_log_path.startswith("/dev/")
                          else access_log_path + ".events")
    names = policy_clusters(policy_text)
    for extra in list(extra_clusters) + policy_source_clusters(policy_text):
        if extra not in names:
            names.append(extra)
    if DEFAULT_CLUSTER in names:
        names.remove(DEFAULT_CLUSTER)
    missing = [n for n in names if n not in upstreams]
    if missing:
        raise ValueError("no upstream address for cluster(s): " + ", ".join(missing))
    if default_upstream is None:
        default_upstream = upstreams.get(DEFAULT_CLUSTER) or next(iter(upstreams.values()))
    all_up = {n: upstreams[n] for n in names}
    all_up[DEFAULT_CLUSTER] = default_upstream
    with open(TEMPLATE) as f:
        text = "".join(line for line in f.readlines() if not line.startswith("#!"))
    if ecds_path is not None:
        a = text.index(_STATIC_FILTER_START)
        b = text.index(_STATIC_FILTER_END, a)
        text = text[:a] + _ECDS_FILTER + text[b:]
    if not evidence_logs:
        text = without_evidence_logs(text)
    tmpl = string.Template(text)
    text = tmpl.substitute(
        ecds_name=json.dumps(ecds_name),
        ecds_path=json.dumps(ecds_path or ""),
        ecds_dir=json.dumps(ecds_watch_dir or os.path.dirname(ecds_path or "") or "."),
        node_id=node_id,
        admin_address=admin_address,
        admin_port=int(admin_port),
        listen_address=listen_address,
        listener_port=int(listener_port),
        access_log_path=json.dumps(access_log_path),
        event_log_path=json.dumps(event_log_path),
        route_header=route_header or policy_route_header(policy_text),
        wasm_path=json.dumps(wasm_path),
        policy_value=_STRUCT_MARK if policy_as == "struct" else yaml_string(policy_text),
        clusters=render_clusters(all_up),
    )
    if policy_as == "struct":
        if ecds_path is not None:
            raise ValueError("policy_as='struct' is for the inline filter, not ECDS")
        text = struct_config(text, policy_text)
    elif policy_as != "string":
        raise ValueError("policy_as must be 'string' or 'struct', not %r" % policy_as)
    return with_node_metadata(text, node_id, node_metadata)


# What logs the filter state in the template: the access log's field and the event log's block.
_EXPOSURE_FIELD = '                  exposure: "%FILTER_STATE(wasm.switchyard_exposure:PLAIN)%"\n'
_EVENT_LOG_START = "          # Exposure events:"
_EVENT_LOG_END = "          route_config:\n"


def without_evidence_logs(text):
    """The template text without the access log's `exposure` field and the event log."""
    if _EXPOSURE_FIELD not in text:
        raise ValueError("the template has no access-log exposure field")
    text = text.replace(_EXPOSURE_FIELD, "", 1)
    a = text.index(_EVENT_LOG_START)
    b = text.index(_EVENT_LOG_END, a)
    return text[:a] + text[b:]


def policy_source_clusters(policy_text):
    """Clusters named by the policy's `source` and `consent_source` (best effort)."""
    try:
        doc = json.loads(policy_text)
    except ValueError:
        return []
    out = []
    for key in ("source", "consent_source"):
        src = doc.get(key) if isinstance(doc, dict) else None
        c = src.get("cluster") if isinstance(src, dict) else None
        if isinstance(c, str) and c and c not in out:
            out.append(c)
    return out


def with_node_metadata(text, node_id, metadata):
    """Bootstrap text with `metadata:` (string values) added to its `node:`."""
    if not metadata:
        return text
    anchor = "node:\n  id: switchyard-%s\n  cluster: switchyard\n" % node_id
    if anchor not in text:
        raise ValueError("no node section to add metadata to")
    lines = "".join("    %s: %s\n" % (json.dumps(str(k)), json.dumps(str(v)))
                    for k, v in metadata.items())
    return text.replace(anchor, anchor + "  metadata:\n" + lines, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--wasm", required=True, help="path to switchyard_plugin.wasm as Envoy should read it")
    ap.add_argument("--upstream", action="append", default=[], metavar="CLUSTER=HOST:PORT")
    ap.add_argument("--all-upstreams", metavar="HOST:PORT",
                    help="address for every cluster not given with --upstream")
    ap.add_argument("--default-upstream", metavar="HOST:PORT")
    ap.add_argument("--listener-port", type=int, default=10000)
    ap.add_argument("--admin-port", type=int, default=9901)
    ap.add_argument("--access-log", default="/dev/stdout")
    ap.add_argument("--event-log", metavar="FILE",
                    help="exposure events, one JSON line per decided request (default: "
                         "ACCESS_LOG.events, or /dev/null for a /dev access log)")
    ap.add_argument("--route-header")
    ap.add_argument("--header-comment", help="text put as a comment at the top of the output")
    ap.add_argument("--ecds-path", metavar="FILE",
                    help="declare the filter with ECDS from FILE (path_config_source) instead of "
                         "inline; write FILE with envoy/push_policy.py")
    ap.add_argument("--ecds-watch-dir", metavar="DIR",
                    help="watched_directory for --ecds-path (default: FILE's directory)")
    ap.add_argument("--node-metadata", action="append", default=[], metavar="KEY=VALUE",
                    help="a string in the bootstrap's node.metadata (switchyard_environment, "
                         "switchyard_pseudonym_key); repeatable")
    ap.add_argument("--policy-as", choices=("string", "struct"), default="string",
                    help="give the policy verbatim as a google.protobuf.StringValue (default), "
                    "or written as YAML, a google.protobuf.Struct")
    ap.add_argument("--no-evidence-logs", action="store_true",
                    help="leave out the access log's exposure field and the event log (for a "
                         "policy with the lean settings, which writes no filter state)")
    ap.add_argument("-o", "--output", help="output file (default: standard output)")
    args = ap.parse_args(argv)

    with open(args.policy, encoding="utf-8") as f:
        policy_text = f.read()
    upstreams = {}
    for spec in args.upstream:
        name, _, hp = spec.partition("=")
        upstreams[name] = _hostport(hp)
    if args.all_upstreams:
        for name in policy_clusters(policy_text):
            upstreams.setdefault(name, _hostport(args.all_upstreams))
    default = _hostport(args.default_upstream) if args.default_upstream else \
        (_hostport(args.all_upstreams) if args.all_upstreams else None)
    if not upstreams and default:
        upstreams[DEFAULT_CLUSTER] = default
    try:
        text = render(policy_text, args.wasm, upstreams, default, args.listener_port,
                      args.admin_port, args.access_log, args.route_header,
                      ecds_path=args.ecds_path, ecds_watch_dir=args.ecds_watch_dir,
                      event_log_path=args.event_log,
                      node_metadata=dict(m.partition("=")[::2] for m in args.node_metadata),
                      policy_as=args.policy_as, evidence_logs=not args.no_evidence_logs)
    except ValueError as e:
        ap.error(str(e))
    if args.header_comment:
        text = "".join("# " + line + "\n" if line else "#\n"
                       for line in args.header_comment.split("\n")) + text
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
