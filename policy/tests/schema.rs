//! schema/policy.schema.json against the Rust reader: every shipped policy passes both; every
//! broken policy below is refused by `load` with its place named, and the structural ones are
//! refused by the schema too (with an error at that place or an enclosing object). Cases that
//! only `load` can catch (name resolution, regexes, networks, duplicates) are pinned as such, so
//! the README's account of what the schema checks stays true.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use switchyard_policy::load;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema() -> Value {
    read_json(&repo().join("schema/policy.schema.json"))
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema()).expect("the schema compiles")
}

/// Instance paths (JSON pointers) of the schema's complaints; empty when valid.
fn schema_errors(v: &jsonschema::Validator, policy: &Value) -> Vec<(String, String)> {
    v.iter_errors(policy)
        .map(|e| (e.instance_path().to_string(), e.to_string()))
        .collect()
}

/// `flags[0].rules[2].split` → `/flags/0/rules/2/split`; `consent.tenants["a b"]` → `/consent/tenants/a b`.
fn place_to_pointer(place: &str) -> String {
    let mut out = String::new();
    let mut chars = place.chars().peekable();
    let mut seg = String::new();
    let flush = |seg: &mut String, out: &mut String| {
        if !seg.is_empty() {
            out.push('/');
            out.push_str(&seg.replace('~', "~0").replace('/', "~1"));
            seg.clear();
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => flush(&mut seg, &mut out),
            '[' => {
                flush(&mut seg, &mut out);
                let mut inner = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    inner.push(c);
                }
                let name = if inner.starts_with('"') {
                    serde_json::from_str::<String>(&inner).unwrap()
                } else {
                    inner
                };
                seg.push_str(&name);
                flush(&mut seg, &mut out);
            }
            c => seg.push(c),
        }
    }
    flush(&mut seg, &mut out);
    out
}

fn load_places(policy: &Value) -> Result<(), Vec<(String, String)>> {
    load(&policy.to_string()).map(|_| ()).map_err(|errors| {
        errors
            .iter()
            .map(|e| (e.place.clone(), e.message.clone()))
            .collect()
    })
}

fn example() -> Value {
    read_json(&repo().join("examples/support-copilot/policy.json"))
}

/// A valid policy that uses every field the reader accepts.
fn every_field() -> Value {
    json!({
        "version": "v1.every-field",
        "environment": "staging",
        "context": {
            "tenant": {"header": "X-Tenant-Id"},
            "user": {"cookie": "uid"},
            "lang": {"query": "lang"},
            "app_version": {"header": "x-app-version"},
            "score": {"header": "x-score"}
        },
        "consent": {
            "tenant_attribute": "tenant",
            "classes": {"c1": {"mode": "opt_in"}, "c2": {"mode": "opt_out"}},
            "tenants": {
                "t1": {
                    "c1": {"state": "opt_in", "actor": "a@b.example", "at": "2026-05-12T09:00:00.5+02:00"},
                    "c2": {"state": "unset", "actor": "ops", "at": "2026-05-13T00:00:00Z"}
                },
                "t 2": {"c2": {"state": "opt_out", "actor": "x", "at": "2026-05-12t09:00:00z"}},
                "t3": {}
            }
        },
        "segments": {
            "s1": [
                {"attribute": "tenant", "op": "in", "values": ["t1", 7]},
                {"attribute": "lang", "op": "exists"}
            ],
            "s2": [{"attribute": "source_ip", "op": "cidr", "values": ["10.0.0.0/8"], "negate": true}]
        },
        "flags": [
            {
                "key": "f1",
                "description": "every field",
                "enabled": true,
                "match": {"path_prefix": "/v1", "host": "API.example", "method": "post", "header_present": "X-AI"},
                "feature_class": "c1",
                "unit": "user",
                "salt": "",
                "variations": {
                    "a": {"cluster": "cluster_a", "attributes": {"model_route": "m-1", "x_2": ""}},
                    "b": {}
                },
                "off_variation": "b",
                "on_consent_denied": {"reject": {"status": 451}},
                "overrides": [{"attribute": "tenant", "values": ["t9", 3], "serve": "a"}],
                "rules": [
                    {"name": "r1", "when": [{"segment": "s1"}, {"attribute": "score", "op": "gte", "values": [3.5]}], "serve": "a"},
                    {"when": [{"attribute": "app_version", "op": "semver_gte", "values": ["1.2.0"]}],
                     "split": [{"variation": "a", "weight": 0}, {"variation": "b", "weight": 10}]},
                    {"when": [], "serve": "b"}
                ],
                "default": {"split": [{"variation": "a", "weight": 1}]}
            },
            {
                "key": "f2",
                "enabled": false,
                "feature_class": "c2",
                "on_consent_denied": {"serve": "x"},
                "variations": {"x": {"cluster": "cx"}},
                "off_variation": "x",
                "overrides": [],
                "rules": [],
                "default": {"serve": "x"}
            }
        ],
        "settings": {
            "route_header": "x-route",
            "exposure_header": "x-exp",
            "version_header": "x-ver",
            "attribute_headers": {"model_route": "x-model-route"},
            "response_headers": true,
            "expose_unit_ids": false,
            "exposure_state": true,
            "exposure_event": false,
            "pseudonym_key": "00112233445566778899AABBCCDDEEFF",
            "fallback_header": "x-gateway-fallback"
        },
        "source": {"cluster": "policy_server", "path": "/policies/prod.json", "authority": "policy.internal",
                   "interval_ms": 2000, "timeout_ms": 1500},
        "consent_source": {"cluster": "consent_server", "path": "/consent?env=prod"}
    })
}

fn pointer_mut<'a>(v: &'a mut Value, pointer: &str) -> &'a mut Value {
    v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the base policy"))
}

fn remove(v: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let removed = pointer_mut(v, parent).as_object_mut().unwrap().remove(key);
    assert!(removed.is_some(), "nothing to remove at {pointer}");
}

/// Asserts that `load` refuses `policy` with an error at `place`, and (when `schema_too`) that
/// the schema refuses it at that place or an enclosing one; when not, that the schema accepts
/// it (a check only `load` can make).
fn assert_refused(
    v: &jsonschema::Validator,
    what: &str,
    policy: &Value,
    place: &str,
    schema_too: bool,
) {
    let errors = match load_places(policy) {
        Ok(()) => panic!("{what}: load accepted the policy"),
        Err(e) => e,
    };
    assert!(
        errors.iter().any(|(p, _)| p == place),
        "{what}: load gave no error at {place:?}; it gave {errors:#?}"
    );
    let s_errors = schema_errors(v, policy);
    if schema_too {
        let pointer = place_to_pointer(place);
        assert!(
            s_errors.iter().any(|(p, _)| pointer == *p
                || (pointer.starts_with(&format!("{p}/"))
                    && (!p.is_empty() || pointer.matches('/').count() == 1))),
            "{what}: the schema gave no error at or above {pointer:?}; it gave {s_errors:#?}"
        );
    } else {
        assert!(
            s_errors.is_empty(),
            "{what}: expected only load to catch this, but the schema did too: {s_errors:#?}"
        );
    }
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    jsonschema::draft202012::meta::validate(&s).unwrap();
}

#[test]
fn every_shipped_policy_passes_the_schema_and_load() {
    let v = validator();
    // examples/**/policy.json
    fn policies_under(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                policies_under(&p, out);
            } else if p.file_name().is_some_and(|n| n == "policy.json") {
                out.push(p);
            }
        }
    }
    let mut paths: Vec<PathBuf> = Vec::new();
    policies_under(&repo().join("examples"), &mut paths);
    for f in std::fs::read_dir(repo().join("testdata/policies")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            paths.push(p);
        }
    }
    assert!(paths.len() >= 3, "found {paths:?}");
    for p in &paths {
        let policy = read_json(p);
        let errs = schema_errors(&v, &policy);
        assert!(errs.is_empty(), "{}: schema errors {errs:#?}", p.display());
        load_places(&policy).unwrap_or_else(|e| panic!("{}: load errors {e:#?}", p.display()));
    }
}

#[test]
fn a_policy_with_every_field_passes_both() {
    let v = validator();
    let p = every_field();
    assert_eq!(schema_errors(&v, &p), vec![]);
    load_places(&p).unwrap();
}

#[test]
fn the_lean_settings_pass_both() {
    let v = validator();
    let mut p = example();
    p["settings"] = json!({
        "version_header": false,
        "attribute_headers": false,
        "exposure_state": false,
        "exposure_event": false,
        "upstream_metrics": false
    });
    assert_eq!(schema_errors(&v, &p), vec![]);
    load_places(&p).unwrap();
}

#[test]
fn every_operator_in_the_schema_is_accepted_by_load_and_no_other() {
    let v = validator();
    let ops: Vec<String> = schema()["$defs"]["op"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ops.len(), 17);
    for op in &ops {
        let values = match op.as_str() {
            "exists" => json!([]),
            "lt" | "lte" | "gt" | "gte" => json!([10]),
            o if o.starts_with("semver") => json!(["1.2.3"]),
            "cidr" => json!(["10.0.0.0/8", "2001:db8::/32"]),
            "matches" => json!(["^v[0-9]+$"]),
            _ => json!(["a", "b"]),
        };
        let mut p = example();
        p["segments"]["staff"] = json!([{"attribute": "plan", "op": op, "values": values}]);
        assert_eq!(schema_errors(&v, &p), vec![], "op {op}");
        load_places(&p).unwrap_or_else(|e| panic!("op {op}: {e:#?}"));
    }
    for bad in ["equals", "IN", "regex", "semver", ""] {
        let mut p = example();
        p["segments"]["staff"][0]["op"] = json!(bad);
        assert_refused(&v, &format!("op {bad:?}"), &p, "segments.staff[0].op", true);
    }
}

#[test]
fn an_unknown_field_in_any_object_is_refused_by_both() {
    let v = validator();
    let objects = [
        ("", ""),
        ("/context/tenant", "context.tenant"),
        ("/consent", "consent"),
        ("/consent/classes/c1", "consent.classes.c1"),
        ("/consent/tenants/t1/c1", "consent.tenants.t1.c1"),
        ("/consent/tenants/t 2/c2", "consent.tenants[\"t 2\"].c2"),
        ("/segments/s1/0", "segments.s1[0]"),
        ("/segments/s1/1", "segments.s1[1]"),
        ("/flags/0", "flags[0]"),
        ("/flags/0/match", "flags[0].match"),
        ("/flags/0/variations/a", "flags[0].variations.a"),
        ("/flags/0/variations/b", "flags[0].variations.b"),
        (
            "/flags/0/on_consent_denied/reject",
            "flags[0].on_consent_denied.reject",
        ),
        ("/flags/0/overrides/0", "flags[0].overrides[0]"),
        ("/flags/0/rules/0", "flags[0].rules[0]"),
        ("/flags/0/rules/0/when/0", "flags[0].rules[0].when[0]"),
        ("/flags/0/rules/0/when/1", "flags[0].rules[0].when[1]"),
        ("/flags/0/rules/1/split/0", "flags[0].rules[1].split[0]"),
        ("/flags/0/default", "flags[0].default"),
        ("/flags/0/default/split/0", "flags[0].default.split[0]"),
        ("/flags/1/on_consent_denied", "flags[1].on_consent_denied"),
        ("/settings", "settings"),
        ("/source", "source"),
        ("/consent_source", "consent_source"),
    ];
    for (pointer, place) in objects {
        let mut p = every_field();
        pointer_mut(&mut p, pointer)
            .as_object_mut()
            .unwrap()
            .insert("colour".into(), json!(1));
        let expected = if place.is_empty() {
            "colour".to_string()
        } else {
            format!("{place}.colour")
        };
        assert_refused(
            &v,
            &format!("unknown field in {pointer:?}"),
            &p,
            &expected,
            true,
        );
    }
}

#[test]
fn a_missing_required_field_is_refused_by_both() {
    let v = validator();
    let required = [
        ("/version", "version"),
        ("/flags", "flags"),
        ("/consent/tenant_attribute", "consent.tenant_attribute"),
        ("/consent/classes", "consent.classes"),
        ("/consent/classes/c1/mode", "consent.classes.c1.mode"),
        (
            "/consent/tenants/t1/c1/state",
            "consent.tenants.t1.c1.state",
        ),
        ("/segments/s1/0/attribute", "segments.s1[0].attribute"),
        ("/segments/s1/0/op", "segments.s1[0].op"),
        ("/flags/0/key", "flags[0].key"),
        ("/flags/0/variations", "flags[0].variations"),
        ("/flags/0/off_variation", "flags[0].off_variation"),
        ("/flags/0/default", "flags[0].default"),
        (
            "/flags/0/overrides/0/attribute",
            "flags[0].overrides[0].attribute",
        ),
        (
            "/flags/0/overrides/0/values",
            "flags[0].overrides[0].values",
        ),
        ("/flags/0/overrides/0/serve", "flags[0].overrides[0].serve"),
        ("/flags/0/rules/0/when", "flags[0].rules[0].when"),
        (
            "/flags/0/rules/1/split/0/variation",
            "flags[0].rules[1].split[0].variation",
        ),
        (
            "/flags/0/rules/1/split/0/weight",
            "flags[0].rules[1].split[0].weight",
        ),
        (
            "/flags/0/on_consent_denied/reject/status",
            "flags[0].on_consent_denied.reject.status",
        ),
        ("/source/cluster", "source.cluster"),
        ("/consent_source/path", "consent_source.path"),
    ];
    for (pointer, place) in required {
        let mut p = every_field();
        remove(&mut p, pointer);
        assert_refused(&v, &format!("without {pointer:?}"), &p, place, true);
    }
}

/// (what, change to the contract's example, place `load` names, whether the schema catches it)
type Case = (&'static str, fn(&mut Value), &'static str, bool);

#[test]
fn broken_policies_are_refused_with_their_place() {
    let v = validator();
    let cases: Vec<Case> = vec![
        ("not an object", |p| *p = json!([]), "", true),
        (
            "flags not an array",
            |p| p["flags"] = json!({}),
            "flags",
            true,
        ),
        (
            "bad op",
            |p| p["flags"][0]["rules"][2]["when"][0]["op"] = json!("equals"),
            "flags[0].rules[2].when[0].op",
            true,
        ),
        (
            "bad consent mode",
            |p| p["consent"]["classes"]["agent_actions"]["mode"] = json!("opt-in"),
            "consent.classes.agent_actions.mode",
            true,
        ),
        (
            "bad consent state",
            |p| p["consent"]["tenants"]["globex"]["support_copilot"]["state"] = json!("no"),
            "consent.tenants.globex.support_copilot.state",
            true,
        ),
        (
            "bad timestamp",
            |p| p["consent"]["tenants"]["globex"]["support_copilot"]["at"] = json!("yesterday"),
            "consent.tenants.globex.support_copilot.at",
            true,
        ),
        (
            "both serve and split",
            |p| p["flags"][0]["rules"][2]["serve"] = json!("control"),
            "flags[0].rules[2]",
            true,
        ),
        (
            "neither serve nor split",
            |p| remove(p, "/flags/0/rules/0/serve"),
            "flags[0].rules[0]",
            true,
        ),
        (
            "default with both",
            |p| p["flags"][0]["default"]["split"] = json!([{"variation": "control", "weight": 1}]),
            "flags[0].default",
            true,
        ),
        (
            "default with neither",
            |p| p["flags"][0]["default"] = json!({}),
            "flags[0].default",
            true,
        ),
        (
            "consent denied with serve and reject",
            |p| p["flags"][0]["on_consent_denied"]["reject"] = json!({"status": 403}),
            "flags[0].on_consent_denied",
            true,
        ),
        (
            "consent denied empty",
            |p| p["flags"][0]["on_consent_denied"] = json!({}),
            "flags[0].on_consent_denied",
            true,
        ),
        (
            "reject status not an error",
            |p| p["flags"][1]["on_consent_denied"]["reject"]["status"] = json!(200),
            "flags[1].on_consent_denied.reject.status",
            true,
        ),
        (
            "reject status a string",
            |p| p["flags"][1]["on_consent_denied"]["reject"]["status"] = json!("403"),
            "flags[1].on_consent_denied.reject.status",
            true,
        ),
        (
            "negative weight",
            |p| p["flags"][0]["rules"][2]["split"][0]["weight"] = json!(-5),
            "flags[0].rules[2].split[0].weight",
            true,
        ),
        (
            "fractional weight",
            |p| p["flags"][0]["rules"][2]["split"][0]["weight"] = json!(2.5),
            "flags[0].rules[2].split[0].weight",
            true,
        ),
        (
            "weight too large",
            |p| p["flags"][0]["rules"][2]["split"][0]["weight"] = json!(1_000_000_001u64),
            "flags[0].rules[2].split[0].weight",
            true,
        ),
        (
            "empty split",
            |p| p["flags"][0]["rules"][2]["split"] = json!([]),
            "flags[0].rules[2].split",
            true,
        ),
        (
            "weights add up to 0",
            |p| p["flags"][0]["rules"][2]["split"] = json!([{"variation": "control", "weight": 0}]),
            "flags[0].rules[2].split",
            true,
        ),
        (
            "no variations",
            |p| p["flags"][0]["variations"] = json!({}),
            "flags[0].variations",
            true,
        ),
        (
            "context with two sources",
            |p| p["context"]["tenant"]["cookie"] = json!("t"),
            "context.tenant",
            true,
        ),
        (
            "context with no source",
            |p| p["context"]["tenant"] = json!({}),
            "context.tenant",
            true,
        ),
        (
            "context redefines a built-in",
            |p| p["context"]["path"] = json!({"header": "x-path"}),
            "context.path",
            true,
        ),
        (
            "enabled not a boolean",
            |p| p["flags"][0]["enabled"] = json!("yes"),
            "flags[0].enabled",
            true,
        ),
        (
            "path prefix without /",
            |p| p["flags"][0]["match"]["path_prefix"] = json!("v1"),
            "flags[0].match.path_prefix",
            true,
        ),
        (
            "exists with values",
            |p| {
                p["segments"]["staff"] =
                    json!([{"attribute": "tenant", "op": "exists", "values": ["x"]}])
            },
            "segments.staff[0].values",
            true,
        ),
        (
            "gt with two values",
            |p| {
                p["segments"]["staff"] =
                    json!([{"attribute": "plan", "op": "gt", "values": [1, 2]}])
            },
            "segments.staff[0].values",
            true,
        ),
        (
            "in without values",
            |p| p["segments"]["staff"] = json!([{"attribute": "plan", "op": "in"}]),
            "segments.staff[0].values",
            true,
        ),
        (
            "a value that is an object",
            |p| p["segments"]["staff"][0]["values"] = json!([{"a": 1}]),
            "segments.staff[0].values[0]",
            true,
        ),
        (
            "empty segment",
            |p| p["segments"]["staff"] = json!([]),
            "segments.staff",
            true,
        ),
        (
            "override without values",
            |p| p["flags"][0]["overrides"][0]["values"] = json!([]),
            "flags[0].overrides[0].values",
            true,
        ),
        (
            "upper-case exposure attribute",
            |p| p["flags"][0]["variations"]["control"]["attributes"]["Model"] = json!("x"),
            "flags[0].variations.control.attributes.Model",
            true,
        ),
        (
            "non-ASCII exposure value",
            |p| {
                p["flags"][0]["variations"]["control"]["attributes"]["model_route"] =
                    json!("modèle")
            },
            "flags[0].variations.control.attributes.model_route",
            true,
        ),
        (
            "bad route header",
            |p| p["settings"] = json!({"route_header": "X-Route"}),
            "settings.route_header",
            true,
        ),
        (
            "settings flag not a boolean",
            |p| p["settings"] = json!({"response_headers": 1}),
            "settings.response_headers",
            true,
        ),
        (
            "context header name with a space",
            |p| p["context"]["plan"] = json!({"header": "x plan"}),
            "context.plan.header",
            true,
        ),
        (
            "header_present name with parentheses",
            |p| p["flags"][0]["match"] = json!({"header_present": "x-a(b)"}),
            "flags[0].match.header_present",
            true,
        ),
        (
            "short pseudonym key",
            |p| p["settings"] = json!({"pseudonym_key": "abc123"}),
            "settings.pseudonym_key",
            true,
        ),
        (
            "bad fallback header",
            |p| p["settings"] = json!({"fallback_header": "X Fallback"}),
            "settings.fallback_header",
            true,
        ),
        (
            "version header true (a name, or false for none)",
            |p| p["settings"] = json!({"version_header": true}),
            "settings.version_header",
            true,
        ),
        (
            "attribute headers true (an object, or false for none)",
            |p| p["settings"] = json!({"attribute_headers": true}),
            "settings.attribute_headers",
            true,
        ),
        (
            "upstream metrics not a boolean",
            |p| p["settings"] = json!({"upstream_metrics": "no"}),
            "settings.upstream_metrics",
            true,
        ),
        (
            "relative source path",
            |p| p["source"] = json!({"cluster": "c", "path": "policies/prod.json"}),
            "source.path",
            true,
        ),
        (
            "polling too often",
            |p| p["source"] = json!({"cluster": "c", "path": "/p", "interval_ms": 10}),
            "source.interval_ms",
            true,
        ),
        (
            "a fetch longer than the interval",
            |p| {
                p["source"] =
                    json!({"cluster": "c", "path": "/p", "interval_ms": 1000, "timeout_ms": 2000})
            },
            "source.timeout_ms",
            false,
        ),
        (
            "empty key",
            |p| p["flags"][0]["key"] = json!(""),
            "flags[0].key",
            true,
        ),
        (
            "key too long",
            |p| p["flags"][0]["key"] = json!("k".repeat(201)),
            "flags[0].key",
            true,
        ),
        (
            "attribute value too long",
            |p| {
                p["flags"][0]["variations"]["control"]["attributes"]["model_route"] =
                    json!("v".repeat(1_001))
            },
            "flags[0].variations.control.attributes.model_route",
            true,
        ),
        (
            "non-ASCII key",
            |p| p["flags"][0]["key"] = json!("café"),
            "flags[0].key",
            true,
        ),
        (
            "non-ASCII version",
            |p| p["version"] = json!("v°1"),
            "version",
            true,
        ),
        (
            "feature class without on_consent_denied",
            |p| remove(p, "/flags/0/on_consent_denied"),
            "flags[0].on_consent_denied",
            true,
        ),
        (
            "on_consent_denied without feature class",
            |p| remove(p, "/flags/1/feature_class"),
            "flags[1].on_consent_denied",
            true,
        ),
        (
            "split without unit",
            |p| remove(p, "/flags/1/unit"),
            "flags[1].default.split",
            true,
        ),
        (
            "a fraction compared as text",
            |p| p["segments"]["staff"][0]["values"] = json!(["x", 1.5]),
            "segments.staff[0].values[1]",
            true,
        ),
        (
            "a fraction in an override",
            |p| p["flags"][0]["overrides"][0]["values"] = json!([1.5]),
            "flags[0].overrides[0].values[0]",
            true,
        ),
        // Only `load` can check these: they need names resolved or values parsed.
        (
            // JSON Schema calls 2.0 an integer; the reader cannot tell it from 2.00.
            "a whole number written with a fraction, compared as text",
            |p| p["segments"]["staff"][0]["values"] = json!([2.0]),
            "segments.staff[0].values[0]",
            false,
        ),
        (
            "undefined variation",
            |p| p["flags"][0]["rules"][2]["split"][0]["variation"] = json!("canddate"),
            "flags[0].rules[2].split",
            false,
        ),
        (
            "undefined segment",
            |p| p["flags"][0]["rules"][0]["when"][0]["segment"] = json!("regulated"),
            "flags[0].rules[0].when[0].segment",
            false,
        ),
        (
            "undefined attribute",
            |p| p["flags"][0]["rules"][2]["when"][0]["attribute"] = json!("tier"),
            "flags[0].rules[2].when[0].attribute",
            false,
        ),
        (
            "undefined consent class",
            |p| p["flags"][0]["feature_class"] = json!("support"),
            "flags[0].feature_class",
            false,
        ),
        (
            "undefined off variation",
            |p| p["flags"][0]["off_variation"] = json!("ctrl"),
            "flags[0].off_variation",
            false,
        ),
        (
            "bad regular expression",
            |p| {
                p["segments"]["staff"] =
                    json!([{"attribute": "tenant", "op": "matches", "values": ["(unclosed"]}])
            },
            "segments.staff[0].values[0]",
            false,
        ),
        (
            "bad network",
            |p| {
                p["segments"]["staff"] =
                    json!([{"attribute": "source_ip", "op": "cidr", "values": ["10.0.0.0/33"]}])
            },
            "segments.staff[0].values[0]",
            false,
        ),
        (
            "bad version number",
            |p| {
                p["segments"]["staff"] =
                    json!([{"attribute": "plan", "op": "semver_gt", "values": ["one"]}])
            },
            "segments.staff[0].values[0]",
            false,
        ),
        (
            "duplicate flag key",
            |p| p["flags"][1]["key"] = json!("support_answer_model_route"),
            "flags[1].key",
            false,
        ),
        (
            "impossible date",
            |p| {
                p["consent"]["tenants"]["globex"]["support_copilot"]["at"] =
                    json!("2026-13-40T09:00:00Z")
            },
            "consent.tenants.globex.support_copilot.at",
            false,
        ),
        (
            "reading a header switchyard owns",
            |p| p["context"]["tenant"] = json!({"header": "x-switchyard-tenant"}),
            "context.tenant.header",
            false,
        ),
    ];
    for (what, change, place, schema_too) in cases {
        let mut p = example();
        change(&mut p);
        assert_refused(&v, what, &p, place, schema_too);
    }
}

/// Every field name the reader accepts (the `allowed` lists passed to `object` in
/// policy/src/document.rs) is a property of some closed object in the schema, and the other way
/// round, so a field added to one and not the other fails here.
#[test]
fn the_schema_names_exactly_the_fields_the_reader_accepts() {
    let source = std::fs::read_to_string(repo().join("policy/src/document.rs")).unwrap();
    let mut reader: std::collections::BTreeSet<String> = Default::default();
    for (start, _) in source.match_indices("self.object(") {
        let rest = &source[start..];
        let open = rest.find("&[").unwrap();
        let close = open + rest[open..].find(']').unwrap();
        for piece in rest[open + 2..close].split(',') {
            let piece = piece.trim();
            if let Some(name) = piece.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                reader.insert(name.to_string());
            }
        }
    }
    fn walk(v: &Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                if map.get("additionalProperties") == Some(&json!(false)) {
                    if let Some(Value::Object(props)) = map.get("properties") {
                        out.extend(props.keys().cloned());
                    }
                }
                map.values().for_each(|x| walk(x, out));
            }
            Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut schema_fields = Default::default();
    walk(&schema(), &mut schema_fields);
    assert!(reader.len() > 40, "read only {reader:?} from document.rs");
    assert_eq!(reader, schema_fields);
}

#[test]
fn places_map_to_pointers() {
    assert_eq!(
        place_to_pointer("flags[0].rules[2].split"),
        "/flags/0/rules/2/split"
    );
    assert_eq!(
        place_to_pointer("consent.tenants[\"t 2\"].c2"),
        "/consent/tenants/t 2/c2"
    );
    assert_eq!(place_to_pointer("version"), "/version");
    assert_eq!(place_to_pointer(""), "");
}

/// A name past the limit gets a cut place from `load` (checked in validation.rs), which no
/// JSON pointer matches: here only that the schema refuses it too.
#[test]
fn an_attribute_name_too_long_is_refused_by_both() {
    let mut p = example();
    p["flags"][0]["variations"]["control"]["attributes"]["a".repeat(201)] = json!("x");
    assert!(load_places(&p).is_err());
    let errors = schema_errors(&validator(), &p);
    assert!(
        errors
            .iter()
            .any(|(pointer, _)| pointer.starts_with("/flags/0/variations/control/attributes")),
        "{errors:#?}"
    );
    p["flags"][0]["variations"]["control"]["attributes"] = json!({"a".repeat(200): "x"});
    assert!(load_places(&p).is_ok());
    assert!(schema_errors(&validator(), &p).is_empty());
}
