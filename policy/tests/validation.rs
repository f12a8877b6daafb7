//! Every kind of policy error, each reported with its place; several at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use switchyard_policy::load;

fn example() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/support-copilot/policy.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every error line of a policy that must be refused.
fn errors(policy: &Value) -> Vec<String> {
    match load(&policy.to_string()) {
        Ok(_) => panic!("policy was accepted: {policy}"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

/// Each of `expected` is among the policy's errors.
fn assert_errors(policy: &Value, expected: &[&str]) {
    let errs = errors(policy);
    for want in expected {
        assert!(
            errs.iter().any(|e| e == want),
            "missing {want:?} in {errs:#?}"
        );
    }
}

fn assert_error(policy: &Value, expected: &str) {
    let errs = errors(policy);
    assert!(
        errs.iter().any(|e| e == expected),
        "expected error {expected:?}, got {errs:#?}"
    );
}

fn modified(f: impl FnOnce(&mut Value)) -> Value {
    let mut p = example();
    f(&mut p);
    p
}

#[test]
fn the_example_policy_is_valid() {
    let p = load(&example().to_string()).unwrap();
    assert_eq!(p.version(), "2026-11-21.3");
    assert_eq!(p.flags().len(), 2);
}

#[test]
fn the_contracts_example_error() {
    let p = modified(|p| p["flags"][0]["rules"][2]["split"][0]["variation"] = json!("canddate"));
    assert_error(
        &p,
        "flags[0].rules[2].split: variation \"canddate\" is not defined in flags[0].variations",
    );
}

#[test]
fn unknown_fields_are_errors() {
    let p = modified(|p| {
        p["flagz"] = json!([]);
        p["flags"][0]["enabeld"] = json!(false);
        p["flags"][0]["rules"][0]["wehn"] = json!([]);
        p["flags"][0]["variations"]["control"]["clustr"] = json!("x");
        p["segments"]["staff"][0]["vals"] = json!(["x"]);
        p["consent"]["tenants"]["globex"]["support_copilot"]["who"] = json!("x");
    });
    let errs = errors(&p);
    for place in [
        "flagz",
        "flags[0].enabeld",
        "flags[0].rules[0].wehn",
        "flags[0].variations.control.clustr",
        "segments.staff[0].vals",
        "consent.tenants.globex.support_copilot.who",
    ] {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{place}: unknown field"))),
            "no unknown-field error at {place}: {errs:#?}"
        );
    }
}

#[test]
fn duplicate_flag_keys() {
    let p = modified(|p| {
        let first = p["flags"][0].clone();
        p["flags"].as_array_mut().unwrap().push(first);
    });
    assert_error(
        &p,
        "flags[2].key: \"support_answer_model_route\" is already the key of flags[0]",
    );
}

#[test]
fn dangling_references() {
    let p = modified(|p| {
        p["flags"][0]["off_variation"] = json!("ctrl");
        p["flags"][0]["on_consent_denied"] = json!({"serve": "fallbak"});
        p["flags"][0]["overrides"][0]["serve"] = json!("cand");
        p["flags"][0]["overrides"][0]["attribute"] = json!("tenantt");
        p["flags"][0]["rules"][0]["when"][0]["segment"] = json!("regulated");
        p["flags"][0]["rules"][1]["serve"] = json!("nope");
        p["flags"][0]["rules"][2]["when"][0]["attribute"] = json!("tier");
        p["flags"][0]["feature_class"] = json!("support_copilott");
        p["flags"][1]["unit"] = json!("usr");
        p["flags"][1]["default"]["split"][1]["variation"] = json!("of");
        p["consent"]["tenant_attribute"] = json!("org");
        p["consent"]["tenants"]["globex"] =
            json!({"support": {"state": "opt_out", "actor": "a", "at": "2026-05-12T09:00:00Z"}});
    });
    let errs = errors(&p);
    let expected = [
        "flags[0].off_variation: variation \"ctrl\" is not defined in flags[0].variations",
        "flags[0].on_consent_denied.serve: variation \"fallbak\" is not defined in flags[0].variations",
        "flags[0].overrides[0].serve: variation \"cand\" is not defined in flags[0].variations",
        "flags[0].overrides[0].attribute: attribute \"tenantt\" is not defined in context (nor one of path, host, method, source_ip)",
        "flags[0].rules[0].when[0].segment: segment \"regulated\" is not defined in segments",
        "flags[0].rules[1].serve: variation \"nope\" is not defined in flags[0].variations",
        "flags[0].rules[2].when[0].attribute: attribute \"tier\" is not defined in context (nor one of path, host, method, source_ip)",
        "flags[0].feature_class: consent class \"support_copilott\" is not defined in consent.classes",
        "flags[1].unit: attribute \"usr\" is not defined in context (nor one of path, host, method, source_ip)",
        "flags[1].default.split: variation \"of\" is not defined in flags[1].variations",
        "consent.tenant_attribute: attribute \"org\" is not defined in context (nor one of path, host, method, source_ip)",
        "consent.tenants.globex.support: consent class \"support\" is not defined in consent.classes",
    ];
    for e in expected {
        assert!(errs.iter().any(|x| x == e), "missing {e:?} in {errs:#?}");
    }
    assert_eq!(errs.len(), expected.len(), "{errs:#?}");
}

#[test]
fn empty_and_zero_splits() {
    let p = modified(|p| {
        p["flags"][0]["rules"][2]["split"] = json!([]);
        p["flags"][1]["default"]["split"] =
            json!([{"variation": "on", "weight": 0}, {"variation": "off", "weight": 0}]);
    });
    assert_error(
        &p,
        "flags[0].rules[2].split: a split needs at least one entry",
    );
    assert_error(
        &p,
        "flags[1].default.split: the weights add up to 0; a split needs a positive total",
    );
    let p = modified(|p| p["flags"][1]["default"]["split"][0]["weight"] = json!(-5));
    assert_error(
        &p,
        "flags[1].default.split[0].weight: must be a whole number from 0 to 1000000000",
    );
    let p = modified(|p| p["flags"][1]["default"]["split"][0]["weight"] = json!(2.5));
    assert_error(
        &p,
        "flags[1].default.split[0].weight: must be a whole number from 0 to 1000000000",
    );
}

#[test]
fn whole_numbers_may_be_written_as_floats() {
    // JSON Schema's `integer` accepts 5.0, and a generator may print it: the reader agrees.
    fn with_weight(w: Value) -> Value {
        modified(|p| p["flags"][0]["rules"][2]["split"][0]["weight"] = w)
    }
    assert_eq!(
        example()["flags"][0]["rules"][2]["split"][0]["weight"],
        json!(5),
        "the example changed"
    );
    let as_int = load(&with_weight(json!(5)).to_string()).unwrap();
    let as_float = load(&with_weight(json!(5.0)).to_string()).unwrap();
    for n in 0..200 {
        let request = switchyard_policy::Request::from_json(&format!(
            r#"{{"method":"POST","path":"/v1/chat/completions","headers":{{"x-tenant-id":"hooli","x-user-id":"u","x-conversation-id":"c-{n}","x-plan":"pro"}}}}"#
        ))
        .unwrap();
        assert_eq!(
            as_int.outcome_json(&as_int.evaluate(&request)),
            as_float.outcome_json(&as_float.evaluate(&request))
        );
    }
    load(&with_weight(json!(1e3)).to_string()).unwrap();
    let p = modified(|p| p["flags"][1]["on_consent_denied"]["reject"]["status"] = json!(403.0));
    load(&p.to_string()).unwrap();
    let p = modified(|p| p["flags"][1]["on_consent_denied"]["reject"]["status"] = json!(403.5));
    assert_error(
        &p,
        "flags[1].on_consent_denied.reject.status: must be an HTTP error status from 400 to 599",
    );
}

#[test]
fn a_split_needs_a_unit() {
    let p = modified(|p| {
        p["flags"][1].as_object_mut().unwrap().remove("unit");
    });
    assert_error(
        &p,
        "flags[1].default.split: a split needs the flag's assignment unit: set \"unit\" on the flag",
    );
}

#[test]
fn bad_regex_cidr_semver_number() {
    let p = modified(|p| {
        p["flags"][0]["rules"][2]["when"] = json!([
            {"attribute": "plan", "op": "matches", "values": ["ok", "(unclosed"]},
            {"attribute": "source_ip", "op": "cidr", "values": ["10.0.0.0/8", "10.0.0.0/40"]},
            {"attribute": "plan", "op": "semver_gte", "values": ["1.2"]},
            {"attribute": "plan", "op": "lt", "values": ["ten"]},
            {"attribute": "plan", "op": "gt", "values": [1, 2]},
            {"attribute": "plan", "op": "exists", "values": ["x"]},
            {"attribute": "plan", "op": "in", "values": []},
            {"attribute": "plan", "op": "like", "values": ["x"]}
        ]);
    });
    let errs = errors(&p);
    let at = |i: usize, rest: &str| format!("flags[0].rules[2].when[{i}].{rest}");
    let want = [
        (at(0, "values[1]: bad regular expression"), true),
        (
            at(1, "values[1]: \"10.0.0.0/40\" is not a CIDR block"),
            true,
        ),
        (at(2, "values[0]: \"1.2\" is not a semantic version"), true),
        (at(3, "values[0]: \"ten\" is not a number"), true),
        (
            at(
                4,
                "values: this operator compares with exactly one value; found 2",
            ),
            false,
        ),
        (at(5, "values: \"exists\" takes no values"), false),
        (at(6, "values: needs at least one value"), false),
        (at(7, "op: \"like\" is not an operator"), true),
    ];
    for (prefix, is_prefix) in want {
        assert!(
            errs.iter().any(|e| if is_prefix {
                e.starts_with(&prefix)
            } else {
                *e == prefix
            }),
            "missing {prefix:?} in {errs:#?}"
        );
    }
}

#[test]
fn rules_need_exactly_one_of_serve_and_split() {
    let p = modified(|p| {
        p["flags"][0]["rules"][0]["split"] = json!([{"variation": "control", "weight": 1}]);
        p["flags"][0]["rules"][1]
            .as_object_mut()
            .unwrap()
            .remove("serve");
    });
    assert_error(
        &p,
        "flags[0].rules[0]: has both \"serve\" and \"split\"; give exactly one",
    );
    assert_error(&p, "flags[0].rules[1]: needs \"serve\" or \"split\"");
}

#[test]
fn consent_problems() {
    let p = modified(|p| {
        p["flags"][0]
            .as_object_mut()
            .unwrap()
            .remove("on_consent_denied");
        p["consent"]["classes"]["agent_actions"]["mode"] = json!("maybe");
        p["consent"]["tenants"]["globex"]["support_copilot"]["state"] = json!("out");
        p["consent"]["tenants"]["initech"]["agent_actions"]["at"] = json!("June 1st");
        p["flags"][1]["on_consent_denied"] = json!({"reject": {"status": 200}});
    });
    let errs = errors(&p);
    for want in [
        "flags[0].on_consent_denied: is required when feature_class is set",
        "consent.classes.agent_actions.mode: \"maybe\" is not a consent mode",
        "consent.tenants.globex.support_copilot.state: \"out\" is not a consent state",
        "consent.tenants.initech.agent_actions.at: \"June 1st\" is not an RFC 3339 timestamp",
        "flags[1].on_consent_denied.reject.status: must be an HTTP error status from 400 to 599",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {errs:#?}"
        );
    }
}

#[test]
fn missing_required_fields_and_wrong_types() {
    let p = json!({"flags": [{"key": 7, "variations": [], "default": {"serve": "x"}}], "context": {"path": {"header": "x"}}});
    let errs = errors(&p);
    for want in [
        "version: is required",
        "flags[0].key: expected a string, found a number",
        "flags[0].variations: expected an object, found an array",
        "flags[0].off_variation: is required",
        "context.path: \"path\" is a built-in attribute and cannot be redefined",
    ] {
        assert!(
            errs.iter().any(|e| e == want || e.starts_with(want)),
            "missing {want:?} in {errs:#?}"
        );
    }
}

#[test]
fn a_byte_order_mark_is_named() {
    let text = format!("\u{feff}{}", example());
    let errs: Vec<String> = match load(&text) {
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
        Ok(_) => panic!("accepted a document with a byte-order mark"),
    };
    assert_eq!(
        errs,
        ["policy: the document starts with a byte-order mark (U+FEFF), which a JSON text may not; save it as UTF-8 without one"]
    );
}

#[test]
fn not_json_and_not_an_object() {
    assert!(errors(&json!([1, 2]))[0].starts_with("policy: expected an object"));
    match load("{\"version\": ") {
        Err(e) => assert!(e.to_string().starts_with("policy: not valid JSON")),
        Ok(_) => panic!("accepted broken JSON"),
    }
}

#[test]
fn owned_headers_cannot_be_read() {
    // The filter removes client copies of these before evaluating, so `switchyard eval` would
    // otherwise see what the filter never does.
    let owned = |h: &str, owner: &str| {
        format!("\"{h}\" is a header switchyard owns ({owner}); client copies are removed before the policy reads anything")
    };
    let p = modified(|p| {
        p["context"]["plan"] = json!({"header": "x-switchyard-plan"});
        p["settings"]["attribute_headers"] = json!({"model_route": "x-model-route"});
        p["context"]["region"] = json!({"header": "x-model-route"});
        p["settings"]["route_header"] = json!("x-route");
        p["flags"][0]["match"]["header_present"] = json!("x-switchyard-debug");
        p["flags"][1]["match"] = json!({"header_present": "x-route"});
        // The setting may be the mistake: the message names it.
        p["settings"]["version_header"] = json!("x-user-id");
    });
    let errs = errors(&p);
    let prefix = "every header starting with x-switchyard-";
    for (place, header, owner) in [
        ("context.plan.header", "x-switchyard-plan", prefix),
        (
            "context.region.header",
            "x-model-route",
            "settings.attribute_headers.model_route",
        ),
        (
            "flags[0].match.header_present",
            "x-switchyard-debug",
            prefix,
        ),
        (
            "flags[1].match.header_present",
            "x-route",
            "settings.route_header",
        ),
        (
            "context.user.header",
            "x-user-id",
            "settings.version_header",
        ),
    ] {
        let want = format!("{place}: {}", owned(header, owner));
        assert!(errs.contains(&want), "missing {want:?} in {errs:#?}");
    }
    assert_eq!(errs.len(), 5, "one error each: {errs:#?}");
}

#[test]
fn headers_switchyard_sets_need_distinct_names() {
    // The exposure value would otherwise overwrite the route header.
    let p = modified(|p| {
        p["settings"]["route_header"] = json!("x-switchyard-route");
        p["settings"]["exposure_header"] = json!("x-switchyard-route");
    });
    let errs = errors(&p);
    assert_eq!(
        errs,
        vec!["settings.exposure_header: \"x-switchyard-route\" is also settings.route_header; each header switchyard sets needs its own name"]
    );
    // A name the author wrote that is another header's default: the error is where they wrote it.
    let p = modified(|p| p["settings"]["route_header"] = json!("x-switchyard-policy-version"));
    assert_error(
        &p,
        "settings.route_header: \"x-switchyard-policy-version\" is also settings.version_header (its default); each header switchyard sets needs its own name",
    );
    let p =
        modified(|p| p["settings"]["attribute_headers"] = json!({"a": "x-model", "b": "x-model"}));
    assert_error(
        &p,
        "settings.attribute_headers.b: \"x-model\" is also settings.attribute_headers.a; each header switchyard sets needs its own name",
    );
    // Renaming a header frees its default name for another.
    let p = modified(|p| {
        p["settings"]["route_header"] = json!("x-route");
        p["settings"]["attribute_headers"] = json!({"model_route": "x-switchyard-cluster"})
    });
    load(&p.to_string()).unwrap();
}

#[test]
fn version_and_attribute_headers_are_a_name_or_false() {
    let p = modified(|p| {
        p["settings"]["version_header"] = json!(true);
        p["settings"]["attribute_headers"] = json!(true);
        p["settings"]["upstream_metrics"] = json!(0);
    });
    assert_eq!(
        errors(&p),
        vec![
            "settings.version_header: expected a header name, or false for no such header, found true",
            "settings.attribute_headers: expected an object of header names, or false for no plain attribute headers, found true",
            "settings.upstream_metrics: expected true or false, found a number",
        ]
    );
    // Turned off, the version header's name is no longer taken: another header may use it,
    // while the x-switchyard- prefix stays switchyard's.
    let p = modified(|p| {
        p["settings"]["version_header"] = json!(false);
        p["settings"]["route_header"] = json!("x-switchyard-policy-version");
    });
    load(&p.to_string()).unwrap();
    let p = modified(|p| {
        p["settings"]["version_header"] = json!(false);
        p["context"]["plan"] = json!({"header": "x-switchyard-policy-version"});
    });
    assert_eq!(
        errors(&p),
        vec!["context.plan.header: \"x-switchyard-policy-version\" is a header switchyard owns (every header starting with x-switchyard-); client copies are removed before the policy reads anything"]
    );
}

#[test]
fn an_attribute_header_no_variation_uses_is_refused() {
    // `model` for `model_route`: the header would never be written, and model_route's would
    // keep its default name.
    let p = modified(|p| {
        p["settings"]["attribute_headers"] =
            json!({"model": "x-model", "prompt_version": "x-prompt"})
    });
    assert_eq!(
        errors(&p),
        vec!["settings.attribute_headers.model: no variation has an attribute \"model\", so this header would never be set"]
    );
}

#[test]
fn a_header_name_no_request_can_carry_is_refused() {
    let p = modified(|p| {
        p["context"]["plan"] = json!({"header": "x plan"});
        p["context"]["region"] = json!({"header": "x-region\u{e9}"});
        p["flags"][0]["match"] = json!({"header_present": "x-a(b)"});
    });
    let token = "is not a valid header name (RFC 9110 token characters: letters, digits and !#$%&'*+-.^_`|~)";
    assert_eq!(
        errors(&p),
        vec![
            format!("context.plan.header: \"x plan\" {token}"),
            format!("context.region.header: \"x-region\u{e9}\" {token}"),
            format!("flags[0].match.header_present: \"x-a(b)\" {token}"),
        ]
    );
    // Upper case is a spelling of the same token: read lower-cased, as before.
    let p = modified(|p| p["context"]["plan"] = json!({"header": "X-Plan"}));
    load(&p.to_string()).unwrap();
}

#[test]
fn limits_refuse_huge_documents() {
    let big = format!(
        "{{\"version\": \"{}\"}}",
        "x".repeat(switchyard_policy::limits::MAX_DOCUMENT_BYTES)
    );
    let err = load(&big).err().unwrap().to_string();
    assert!(err.contains("the limit is"), "{err}");

    let flags: Vec<Value> = (0..=switchyard_policy::limits::MAX_FLAGS)
        .map(|i| json!({"key": format!("f{i}"), "variations": {"a": {}}, "off_variation": "a", "default": {"serve": "a"}}))
        .collect();
    let p = json!({"version": "1", "flags": flags});
    assert_error(&p, "flags: has 1001 entries; the limit is 1000");

    let p =
        modified(|p| p["flags"][0]["rules"][2]["when"][0]["values"] = json!(vec!["v"; 100_001]));
    assert_error(
        &p,
        "flags[0].rules[2].when[0].values: has 100001 entries; the limit is 100000",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let p = modified(|p| {
        p["version"] = json!("");
        p["flags"][0]["rules"][2]["split"][0]["variation"] = json!("canddate");
        p["flags"][1]["off_variation"] = json!("of");
        p["segments"]["staff"][0]["op"] = json!("inn");
    });
    let errs = errors(&p);
    assert!(errs.len() >= 4, "{errs:#?}");
}

/// The example policy's text with one replacement (for what a `Value` cannot hold).
fn example_text_with(from: &str, to: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/support-copilot/policy.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
    text.replacen(from, to, 1)
}

#[test]
fn a_repeated_key_is_refused_with_its_place() {
    // serde_json alone would keep the last copy: the empty record would drop globex's opt-out
    // and send an opted-out tenant to the AI route.
    let text = example_text_with(
        "\"initech\": {",
        "\"globex\": {}, \"initech\": {\"agent_actions\": {\"state\": \"opt_out\"},",
    );
    let text = text.replacen(
        "\"enabled\": true,",
        "\"enabled\": false, \"enabled\": true,",
        1,
    );
    let errs: Vec<String> = match load(&text) {
        Ok(_) => panic!("a policy with repeated keys was accepted"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    };
    for place in [
        "consent.tenants.globex",
        "consent.tenants.initech.agent_actions",
        "flags[0].enabled",
    ] {
        let want = format!(
            "{place}: appears more than once in its object; the copies would silently replace each other, so keep one"
        );
        assert!(errs.contains(&want), "missing {want:?} in {errs:#?}");
    }
}

#[test]
fn pseudo_headers_are_read_only_as_built_in_attributes() {
    let p = modified(|p| {
        p["context"]["tenant"] = json!({"header": ":authority"});
        p["flags"][0]["match"]["header_present"] = json!(":Path");
    });
    assert_errors(&p, &[
        "context.tenant.header: \":authority\" is a pseudo-header; read the built-in attributes path, host and method instead",
        "flags[0].match.header_present: \":path\" is a pseudo-header; read the built-in attributes path, host and method instead",
    ]);
    // Host reaches the filter as :authority too, in any case it was written.
    let p = modified(|p| {
        p["context"]["plan"] = json!({"header": "Host"});
        p["flags"][1]["match"] = json!({"header_present": "host"});
    });
    let host = "Envoy carries the Host header as the pseudo-header :authority, so no request reaches the filter with a \"host\" header; read the built-in attribute host instead";
    assert_errors(
        &p,
        &[
            &format!("context.plan.header: {host}"),
            &format!("flags[1].match.header_present: {host}"),
        ],
    );
}

#[test]
fn every_header_switchyard_sets_is_well_formed_and_distinct() {
    let p = modified(|p| {
        let v = &mut p["flags"][0]["variations"]["control"];
        v["cluster"] = json!("support_model_a\r\nx-injected: 1");
        v["attributes"]["model-route"] = json!("a");
        p["flags"][0]["variations"]["candidate"]["attributes"]["policy-version"] = json!("b");
        p["settings"]["version_header"] = json!("x-switchyard-attr-policy-version");
    });
    assert_errors(&p, &[
        "flags[0].variations.control.cluster: a cluster name must be printable ASCII without spaces (it travels in the route header)",
        "flags[0].variations.control.attributes.model-route: goes out as the header \"x-switchyard-attr-model-route\", which is also the header of attribute \"model_route\"; each header switchyard sets needs its own name",
        "flags[0].variations.candidate.attributes.policy-version: goes out as the header \"x-switchyard-attr-policy-version\", which is also settings.version_header; each header switchyard sets needs its own name",
    ]);
}

#[test]
fn a_consent_record_says_who_set_it_and_when() {
    let p = modified(|p| {
        p["consent"]["tenants"]["globex"]["support_copilot"] = json!({"state": "opt_out"});
        p["consent"]["tenants"]["initech"]["agent_actions"]["actor"] = json!("  ");
    });
    let errs = errors(&p);
    let expected = [
        "consent.tenants.globex.support_copilot.actor: is required",
        "consent.tenants.globex.support_copilot.at: is required",
        "consent.tenants.initech.agent_actions.actor: must name who set the record",
    ];
    assert_eq!(errs, expected);
}

#[test]
fn a_header_switchyard_sets_is_not_one_the_request_needs() {
    let p = modified(|p| {
        p["settings"]["route_header"] = json!("cookie");
        p["settings"]["attribute_headers"] = json!({"model_route": "authorization"});
    });
    let errs = errors(&p);
    for (place, h) in [
        ("settings.route_header", "cookie"),
        ("settings.attribute_headers.model_route", "authorization"),
    ] {
        let want = format!("{place}: \"{h}\" is a request header clients send and the request relies on; switchyard removes client copies of the headers it sets, so pick another name");
        assert!(errs.contains(&want), "missing {want:?} in {errs:#?}");
    }
}

/// A name that is defined but broken (or a field present but malformed) is reported once,
/// where it is broken; the references to it do not add "not defined" or "is required" errors
/// that would send the author looking for a mistake they did not make.
#[test]
fn a_broken_definition_is_reported_once_not_again_at_its_references() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "reject status out of range",
            modified(|p| p["flags"][1]["on_consent_denied"]["reject"]["status"] = json!(200)),
            "flags[1].on_consent_denied.reject.status: must be an HTTP error status from 400 to 599",
        ),
        (
            "bad consent mode",
            modified(|p| p["consent"]["classes"]["support_copilot"]["mode"] = json!("optout")),
            "consent.classes.support_copilot.mode: \"optout\" is not a consent mode (expected opt_in or opt_out)",
        ),
        (
            "consent class as a string",
            modified(|p| p["consent"]["classes"]["support_copilot"] = json!("opt_out")),
            "consent.classes.support_copilot: expected an object, found a string",
        ),
        (
            "consent classes as a list",
            modified(|p| p["consent"]["classes"] = json!(["support_copilot", "agent_actions"])),
            "consent.classes: expected an object, found an array",
        ),
        (
            "context attribute with two sources",
            modified(|p| p["context"]["plan"] = json!({"header": "x-plan", "cookie": "plan"})),
            "context.plan: must name exactly one source: {\"header\": NAME}, {\"cookie\": NAME} or {\"query\": NAME}",
        ),
        (
            "context attribute reading a pseudo-header",
            modified(|p| p["context"]["plan"] = json!({"header": ":authority"})),
            "context.plan.header: \":authority\" is a pseudo-header; read the built-in attributes path, host and method instead",
        ),
        (
            "variations as a list",
            modified(|p| p["flags"][0]["variations"] = json!(["control", "candidate"])),
            "flags[0].variations: expected an object, found an array",
        ),
        (
            "variations as a list, their attributes named in attribute_headers",
            modified(|p| {
                p["flags"][0]["variations"] = json!(["control", "candidate"]);
                p["settings"]["attribute_headers"] = json!({"model_route": "x-model"});
            }),
            "flags[0].variations: expected an object, found an array",
        ),
        (
            "off_variation missing",
            modified(|p| {
                p["flags"][0].as_object_mut().unwrap().remove("off_variation");
            }),
            "flags[0].off_variation: is required",
        ),
        (
            "segment clause broken",
            modified(|p| p["segments"]["staff"][0]["op"] = json!("inn")),
            "segments.staff[0].op: \"inn\" is not an operator (expected one of: in, not_in, starts_with, ends_with, contains, matches, exists, lt, lte, gt, gte, semver_lt, semver_lte, semver_gt, semver_gte, semver_eq, cidr)",
        ),
    ];
    for (what, policy, only) in cases {
        let errs = errors(&policy);
        assert_eq!(errs, vec![only.to_string()], "{what}");
    }
}

/// The suppression is only for what the reader explained: a reference to a name that is
/// really missing is still reported next to an unrelated broken definition.
#[test]
fn an_undefined_name_is_still_reported_beside_a_broken_one() {
    let p = modified(|p| {
        p["context"]["plan"] = json!({"header": "x-plan", "cookie": "plan"});
        p["flags"][0]["rules"][1]["when"][0] = json!({"segment": "stafff"});
        p["flags"][0]["rules"][2]["split"][0]["variation"] = json!("canddate");
        p["flags"][0]["rules"][2]["split"][1]["variation"] = json!("controll");
        p["flags"][0]["feature_class"] = json!("support");
    });
    assert_eq!(
        errors(&p),
        vec![
            "context.plan: must name exactly one source: {\"header\": NAME}, {\"cookie\": NAME} or {\"query\": NAME}",
            "flags[0].feature_class: consent class \"support\" is not defined in consent.classes",
            "flags[0].rules[1].when[0].segment: segment \"stafff\" is not defined in segments",
            "flags[0].rules[2].split: variation \"canddate\" is not defined in flags[0].variations",
            "flags[0].rules[2].split: variation \"controll\" is not defined in flags[0].variations",
        ]
    );
}

/// A policy's regular expressions have a budget: one pattern's compiled size, and how many a
/// policy holds. Repeats of a pattern in one clause compile once and count once.
#[test]
fn regular_expressions_have_a_size_and_count_budget() {
    let p = modified(|p| {
        p["segments"]["bomb"] = json!([{"attribute": "tenant", "op": "matches", "values": vec!["(?:a{100}){320}"; 8_000]}]);
    });
    let errs = errors(&p);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("segments.bomb[0].values[0]: bad regular expression"),
        "{errs:#?}"
    );

    let max = switchyard_policy::limits::MAX_REGEXES;
    let patterns = |n: usize| -> Vec<String> { (0..n).map(|i| format!("^t{i}$")).collect() };
    let p = modified(|p| {
        p["segments"]["many"] =
            json!([{"attribute": "tenant", "op": "matches", "values": patterns(max + 1)}]);
    });
    let over = format!(
        "the policy's regular expressions are over their budget of {max} (each counts 1, and 1 \
         more per capture group: write groups as (?:...) where nothing reads them)"
    );
    assert_eq!(
        errors(&p),
        vec![format!("segments.many[0].values[{max}]: {over}")]
    );
    // Capture groups count: a regex's matching cache grows with them, so `()` repeated
    // hundreds of times is no way around the budget.
    let groups = "()".repeat(200);
    let p = modified(|p| {
        p["segments"]["groups"] = json!([{"attribute": "path", "op": "matches",
            "values": [format!("{groups}a"), format!("{groups}b")]}]);
    });
    assert_eq!(
        errors(&p),
        vec![format!("segments.groups[0].values[1]: {over}")]
    );
    let p = modified(|p| {
        let mut values = patterns(max);
        values.extend(patterns(max));
        p["segments"]["many"] = json!([{"attribute": "tenant", "op": "matches", "values": values}]);
    });
    load(&p.to_string()).expect("repeats within a clause count once");
}

/// Ordinary patterns are well inside the size limit, in the command as in the filter (whose
/// host test configures the same ones): a host name, a base64 token, a word list.
#[test]
fn ordinary_regular_expressions_are_accepted() {
    let p = modified(|p| {
        p["segments"]["ordinary"] = json!([{"attribute": "host", "op": "matches",
            "values": ORDINARY_REGEXES}]);
    });
    load(&p.to_string()).unwrap();
}

const ORDINARY_REGEXES: [&str; 4] = [
    r"^[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63}){0,10}$",
    r"^[A-Za-z0-9+/]{0,700}={0,2}$",
    r"^[\w.-]{1,64}@[\w.-]{1,255}$",
    "^(?:gpt-4o|gpt-4o-mini|claude-3-5-sonnet|claude-3-5-haiku|llama-3.1-70b|mistral-large)$",
];

/// A hostile document can have millions of problems; the first hundred are listed, the rest
/// counted, so refusing it costs neither gigabytes nor a flooded log.
#[test]
fn past_a_hundred_problems_the_rest_are_counted() {
    let p = modified(|p| {
        let tenants: serde_json::Map<String, Value> = (0..150)
            .map(|i| (format!("t{i}"), json!({"support_copilot": {}})))
            .collect();
        p["consent"]["tenants"] = Value::Object(tenants);
    });
    let refused = load(&p.to_string()).err().unwrap();
    // Each empty record misses state, actor and at.
    assert_eq!(refused.len(), 450);
    assert_eq!(refused.iter().count(), switchyard_policy::MAX_LISTED_ERRORS);
    assert_eq!(refused.unlisted(), 350);
    let lines = refused.lines();
    assert_eq!(lines.len(), 101);
    assert_eq!(
        lines[100],
        "policy: 350 more problem(s) not listed (only the first 100 are)"
    );
    assert_eq!(refused.to_string().lines().count(), 101);
}

/// A megabyte-long value in any place a message quotes it makes a short line: the value is
/// cut after 200 bytes with its length, so one hostile value cannot flood the proxy's log.
#[test]
fn long_values_are_quoted_cut() {
    let long = "y".repeat(1_000_000);
    let cut = format!("\"{}… (1000000 bytes)\"", "y".repeat(200));
    type Change = fn(&mut Value, &str);
    // (change, place, message, whether the message quotes the value)
    let places: [(Change, &str, &str, bool); 12] = [
        (
            |p, v| p["consent"]["tenants"]["globex"]["support_copilot"]["at"] = json!(v),
            "consent.tenants.globex.support_copilot.at",
            "is not an RFC 3339 timestamp (like 2026-05-12T09:00:00Z)",
            true,
        ),
        (
            |p, v| p["consent"]["tenants"]["globex"]["support_copilot"]["state"] = json!(v),
            "consent.tenants.globex.support_copilot.state",
            "is not a consent state (expected opt_in, opt_out or unset)",
            true,
        ),
        (
            |p, v| p["consent"]["classes"]["support_copilot"]["mode"] = json!(v),
            "consent.classes.support_copilot.mode",
            "is not a consent mode (expected opt_in or opt_out)",
            true,
        ),
        (
            |p, v| p["segments"]["staff"][0]["op"] = json!(v),
            "segments.staff[0].op",
            "is not an operator (expected one of: in, not_in, starts_with, ends_with, contains, matches, exists, lt, lte, gt, gte, semver_lt, semver_lte, semver_gt, semver_gte, semver_eq, cidr)",
            true,
        ),
        (
            |p, v| p["segments"]["staff"][0] = json!({"attribute": "plan", "op": "gt", "values": [v]}),
            "segments.staff[0].values[0]",
            "is not a number",
            true,
        ),
        (
            |p, v| p["segments"]["staff"][0] = json!({"attribute": "plan", "op": "semver_gt", "values": [v]}),
            "segments.staff[0].values[0]",
            "is not a semantic version (like 1.4.0 or 2.0.0-rc.1)",
            true,
        ),
        (
            |p, v| p["segments"]["staff"][0] = json!({"attribute": "plan", "op": "cidr", "values": [v]}),
            "segments.staff[0].values[0]",
            "is not a CIDR block (like 10.0.0.0/8 or 2001:db8::/32) or an IP address",
            true,
        ),
        (
            |p, v| {
                let record = p["consent"]["tenants"]["globex"]["support_copilot"].take();
                p["consent"]["tenants"]["globex"] = json!({ v: record });
            },
            "",
            "is not defined in consent.classes",
            true,
        ),
        (
            |p, v| p["settings"] = json!({"attribute_headers": { v: "x-route" }}),
            "",
            ", so this header would never be set",
            true,
        ),
        (
            |p, v| p["context"]["plan"]["header"] = json!(format!(":{v}")),
            "context.plan.header",
            "is 1000001 bytes long; the limit is 200",
            false,
        ),
        (
            |p, v| p["flags"][0]["variations"]["control"]["attributes"][v] = json!("x"),
            "",
            "is 1000000 bytes long; the limit is 200",
            false,
        ),
        (
            |p, v| p["flags"][0]["variations"]["control"]["attributes"]["model_route"] = json!(v),
            "flags[0].variations.control.attributes.model_route",
            "the value is 1000000 bytes long; the limit is 1000 (it travels in a header on every request this variation serves)",
            false,
        ),
    ];
    for (change, place, message, quotes) in places {
        let mut p = example();
        change(&mut p, &long);
        let errs = errors(&p);
        let longest = errs.iter().map(String::len).max().unwrap_or(0);
        assert!(longest < 1_000, "a {longest}-byte line: {:.300}", errs[0]);
        let line = errs
            .iter()
            .find(|e| e.starts_with(place) && e.ends_with(message))
            .unwrap_or_else(|| panic!("no {place}: … {message} in {errs:.300?}"));
        // Where the message quotes the value, it shows the cut value and its length.
        if quotes {
            assert!(line.contains(&cut), "{line:.300}");
        }
    }
    // Control characters in a quoted value cannot split the line.
    let p = modified(|p| p["segments"]["staff"][0]["op"] = json!("in\nflags[0]: forged"));
    assert_error(
        &p,
        "segments.staff[0].op: \"in\\nflags[0]: forged\" is not an operator (expected one of: in, not_in, starts_with, ends_with, contains, matches, exists, lt, lte, gt, gte, semver_lt, semver_lte, semver_gt, semver_gte, semver_eq, cidr)",
    );
}

/// A structural error in a rule (a bad weight, both serve and split), a consent record (a bad
/// timestamp) or a variation (a badly named attribute) does not hide the unresolved names
/// around it: the author sees every problem in one run.
#[test]
fn a_broken_part_hides_none_of_the_references_beside_it() {
    let p = modified(|p| {
        let rules = &mut p["flags"][0]["rules"];
        rules[0]["split"] = json!([{"variation": "candidate", "weight": 1}]);
        rules[0]["when"][0]["segment"] = json!("regulated");
        rules[2]["split"][0]["variation"] = json!("canddate");
        rules[2]["split"][1]["weight"] = json!(1.5);
        rules[2]["when"][0]["attribute"] = json!("plann");
        p["flags"][0]["default"] = json!({"split": [{"variation": "contrl", "weight": "1"}]});
        p["consent"]["tenants"]["globex"]["support_copilt"] =
            json!({"state": "opt_out", "actor": "a", "at": "yesterday"});
        p["flags"][0]["variations"]["control"]["attributes"]["Bad Name"] = json!("x");
        p["settings"] = json!({"attribute_headers": {"modle_route": "x-model"}});
    });
    assert_errors(
        &p,
        &[
            "flags[0].rules[0]: has both \"serve\" and \"split\"; give exactly one",
            "flags[0].rules[0].when[0].segment: segment \"regulated\" is not defined in segments",
            "flags[0].rules[2].split[1].weight: must be a whole number from 0 to 1000000000",
            "flags[0].rules[2].split: variation \"canddate\" is not defined in flags[0].variations",
            "flags[0].rules[2].when[0].attribute: attribute \"plann\" is not defined in context (nor one of path, host, method, source_ip)",
            "flags[0].default.split[0].weight: expected a number, found a string",
            "flags[0].default.split: variation \"contrl\" is not defined in flags[0].variations",
            "consent.tenants.globex.support_copilt.at: \"yesterday\" is not an RFC 3339 timestamp (like 2026-05-12T09:00:00Z)",
            "consent.tenants.globex.support_copilt: consent class \"support_copilt\" is not defined in consent.classes",
            "settings.attribute_headers.modle_route: no variation has an attribute \"modle_route\", so this header would never be set",
        ],
    );
}

/// RFC 3339 5.7: a consent record's `at` must be a day that exists.
#[test]
fn a_consent_timestamp_is_a_day_that_exists() {
    let at = |when: &str| {
        modified(|p| p["consent"]["tenants"]["globex"]["support_copilot"]["at"] = json!(when))
    };
    for bad in [
        "2026-02-29T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
    ] {
        assert_error(
            &at(bad),
            &format!("consent.tenants.globex.support_copilot.at: \"{bad}\" is not an RFC 3339 timestamp (like 2026-05-12T09:00:00Z)"),
        );
    }
    for good in [
        "2028-02-29T00:00:00Z",
        "2000-02-29T12:00:00+01:00",
        "2026-12-31T23:59:60Z",
    ] {
        assert!(load(&at(good).to_string()).is_ok(), "{good}");
    }
}

/// A JSON number is read as its value, not as it was written, so where values are compared as
/// text a fraction or an exponent would silently match something else (`1.10` as "1.1"). Such
/// numbers are refused there and asked for as strings; whole numbers, and any number compared
/// as a number, are kept.
#[test]
fn a_number_compared_as_text_must_be_whole() {
    let with = |change: fn(&mut Value), number: &str| -> String {
        let mut p = example();
        change(&mut p);
        p.to_string().replace("\"NUMBER\"", number)
    };
    let in_segment: fn(&mut Value) = |p| {
        p["segments"]["staff"][0] =
            json!({"attribute": "plan", "op": "in", "values": ["x", "NUMBER"]})
    };
    let in_override: fn(&mut Value) =
        |p| p["flags"][0]["overrides"][0]["values"] = json!(["NUMBER"]);
    let in_semver: fn(&mut Value) = |p| {
        p["segments"]["staff"][0] =
            json!({"attribute": "plan", "op": "semver_gte", "values": ["NUMBER"]})
    };
    let compared: fn(&mut Value) = |p| {
        p["segments"]["staff"][0] = json!({"attribute": "plan", "op": "gte", "values": ["NUMBER"]})
    };
    let message = "a number with a fraction or an exponent is compared as text here, but its \
                   text is not kept as written (1.10 would be read as \"1.1\"); write it as a \
                   string";
    for number in ["1.10", "1e3", "2.0", "100000000000000000000"] {
        for (change, place) in [
            (in_segment, "segments.staff[0].values[1]"),
            (in_override, "flags[0].overrides[0].values[0]"),
            (in_semver, "segments.staff[0].values[0]"),
        ] {
            let errs: Vec<String> = match load(&with(change, number)) {
                Ok(_) => panic!("{number} at {place} was accepted"),
                Err(e) => e.iter().map(|e| e.to_string()).collect(),
            };
            assert_eq!(errs, [format!("{place}: {message}")], "{number}");
        }
        assert!(load(&with(compared, number)).is_ok(), "gte {number}");
    }
    for number in ["42", "-7", "0"] {
        for change in [in_segment, in_override, compared] {
            assert!(load(&with(change, number)).is_ok(), "{number}");
        }
    }
}

/// The request's host is read in lower case and without its port, so a `match.host` with a
/// port, or a host clause value with upper case or a port, could never match: the flag or rule
/// would be dead without a word. Each is refused at its place with what to write instead.
#[test]
fn a_host_no_request_can_have_is_refused() {
    let p = modified(|p| p["flags"][0]["match"] = json!({"host": "API.example:8443"}));
    assert_errors(
        &p,
        &["flags[0].match.host: the request's host is compared without its port, so \"api.example:8443\" never matches; write \"api.example\""],
    );
    let p = modified(|p| {
        p["segments"]["staff"] = json!([
            {"attribute": "host", "op": "in", "values": ["api.example", "API.example", "api.example:443", "[::1]:80"]},
            {"attribute": "host", "op": "starts_with", "values": ["Api."]},
            {"attribute": "host", "op": "ends_with", "values": [".example:443"]},
        ])
    });
    let message = |value: &str, write: &str| {
        format!("the host attribute is read in lower case and without its port, so \"{value}\" never matches it; write \"{write}\"")
    };
    let errs = errors(&p);
    let want = [
        format!(
            "segments.staff[0].values[1]: {}",
            message("API.example", "api.example")
        ),
        format!(
            "segments.staff[0].values[2]: {}",
            message("api.example:443", "api.example")
        ),
        format!(
            "segments.staff[0].values[3]: {}",
            message("[::1]:80", "[::1]")
        ),
        format!("segments.staff[1].values[0]: {}", message("Api.", "api.")),
        format!(
            "segments.staff[2].values[0]: {}",
            message(".example:443", ".example")
        ),
    ];
    assert_eq!(errs, want);
    // What a host can be is accepted: lower case, no port, a bracketed IPv6 address, a bare
    // one, any regular expression, and upper case in a header attribute.
    let p = modified(|p| {
        p["flags"][0]["match"] = json!({"host": "API.Example"});
        p["segments"]["staff"] = json!([
            {"attribute": "host", "op": "in", "values": ["api.example", "[::1]", "2001:db8::1"]},
            {"attribute": "host", "op": "matches", "values": ["(?i)^API\\."]},
            {"attribute": "tenant", "op": "in", "values": ["ACME:1"]},
        ])
    });
    assert!(load(&p.to_string()).is_ok());
}
