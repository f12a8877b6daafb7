//! Exposure events, pseudonymous unit ids, the environment guard and the swap audit summary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use switchyard_policy::{
    content_hash, load, load_with, summarize_change, EventInfo, LoadOptions, Request,
    UpstreamResult,
};

fn example() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/support-copilot/policy.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn chat<'a>(tenant: &'a str, plan: &'a str, conversation: &'a str) -> Request<'a> {
    Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![
            ("x-tenant-id".into(), tenant.into()),
            ("x-plan".into(), plan.into()),
            ("x-conversation-id".into(), conversation.into()),
            ("x-request-id".into(), "req-1".into()),
        ],
        ..Request::default()
    }
}

const KEY: &str = "000102030405060708090a0b0c0d0e0f";

#[test]
fn events_use_opentelemetry_names_and_carry_no_raw_ids() {
    let mut p = example();
    p["settings"] = json!({"pseudonym_key": KEY});
    let policy = load(&p.to_string()).unwrap();
    let req = chat("hooli", "pro", "conv-secret-42");
    let outcome = policy.evaluate(&req);
    let info = EventInfo {
        timestamp_ms: 1_795_305_600_000,
        request_id: Some("req-1"),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        upstream: Some(UpstreamResult {
            status: Some(200),
            duration_ms: Some(12),
            fallback_used: Some(false),
        }),
    };
    let line = policy.exposure_event(&outcome, &info);
    assert!(
        !line.contains("conv-secret-42"),
        "raw unit id leaked: {line}"
    );
    assert!(!line.contains("hooli"), "raw tenant id leaked: {line}");
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["timestamp"], "2026-11-22T00:00:00.000Z");
    assert_eq!(e["request_id"], "req-1");
    assert_eq!(e["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(e["feature_flag.version"], "2026-11-21.3");
    assert_eq!(e["upstream"]["status"], 200);
    let d = &e["decisions"][0];
    assert_eq!(d["feature_flag.key"], "support_answer_model_route");
    assert_eq!(d["feature_flag.result.reason"], "split");
    assert_eq!(d["unit"], "conversation");
    assert_eq!(d["rule"], "paid canary");
    let id = d["feature_flag.context.id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    // Stable for the same unit, different for another unit or another key.
    let again: Value =
        serde_json::from_str(&policy.exposure_event(&policy.evaluate(&req), &info)).unwrap();
    assert_eq!(again["decisions"][0]["feature_flag.context.id"], id);
    let other = policy.evaluate(&chat("hooli", "pro", "conv-other"));
    let other: Value = serde_json::from_str(&policy.exposure_event(&other, &info)).unwrap();
    assert_ne!(other["decisions"][0]["feature_flag.context.id"], id);
    let rekeyed = load_with(
        &example().to_string(),
        &LoadOptions {
            pseudonym_key: switchyard_policy::parse_key("ffeeddccbbaa99887766554433221100"),
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let r: Value =
        serde_json::from_str(&rekeyed.exposure_event(&rekeyed.evaluate(&req), &info)).unwrap();
    assert_ne!(r["decisions"][0]["feature_flag.context.id"], id);
    // Exposure headers carry no raw id either.
    let headers = policy.exposure_headers(&outcome);
    assert!(headers
        .iter()
        .all(|(_, v)| !v.contains("conv-secret-42") && !v.contains("hooli")));
}

#[test]
fn without_a_key_there_is_no_unit_id_and_raw_ids_only_on_request() {
    let policy = load(&example().to_string()).unwrap();
    let outcome = policy.evaluate(&chat("hooli", "pro", "conv-7"));
    let e: Value =
        serde_json::from_str(&policy.exposure_event(&outcome, &EventInfo::default())).unwrap();
    assert!(e["decisions"][0]["feature_flag.context.id"].is_null());
    assert!(e["decisions"][0].get("unit_id").is_none());

    let mut p = example();
    p["settings"] = json!({"expose_unit_ids": true});
    let policy = load(&p.to_string()).unwrap();
    let outcome = policy.evaluate(&chat("hooli", "pro", "conv-7"));
    let e: Value =
        serde_json::from_str(&policy.exposure_event(&outcome, &EventInfo::default())).unwrap();
    assert_eq!(e["decisions"][0]["unit_id"], "conv-7");
    let exposure = &policy.exposure_headers(&outcome)[0].1;
    assert!(
        exposure.contains(";unit=\"conversation\";unit_id=\"conv-7\""),
        "{exposure}"
    );
}

#[test]
fn version_and_attribute_headers_can_be_turned_off() {
    let req = chat("hooli", "pro", "conv-7");
    let names = |settings: Value| {
        let mut p = example();
        p["settings"] = settings;
        let policy = load(&p.to_string()).unwrap();
        let outcome = policy.evaluate(&req);
        let headers = policy.exposure_headers(&outcome);
        let names: Vec<String> = headers.iter().map(|(n, _)| n.to_string()).collect();
        (names, headers[0].1.to_string())
    };
    let (all, exposure) = names(json!({}));
    assert_eq!(
        all,
        [
            "x-switchyard-exposure",
            "x-switchyard-policy-version",
            "x-switchyard-attr-model-route",
            "x-switchyard-attr-prompt-version",
            "x-switchyard-attr-retrieval-profile"
        ]
    );
    let (lean, lean_exposure) = names(json!({"version_header": false, "attribute_headers": false}));
    assert_eq!(lean, ["x-switchyard-exposure"]);
    // What the plain headers carried is still in the exposure item.
    assert_eq!(lean_exposure, exposure);
    assert!(
        exposure.contains(";version=\"2026-11-21.3\";attr.model_route="),
        "{exposure}"
    );
    let (renamed, _) = names(json!({"version_header": "x-policy", "attribute_headers": false}));
    assert_eq!(renamed, ["x-switchyard-exposure", "x-policy"]);
}

#[test]
fn bad_pseudonym_key_is_refused() {
    let mut p = example();
    p["settings"] = json!({"pseudonym_key": "not-hex"});
    let err = load(&p.to_string()).err().unwrap().to_string();
    assert!(
        err.starts_with("settings.pseudonym_key: must be 32 hexadecimal digits"),
        "{err}"
    );
}

#[test]
fn environment_guard() {
    let text = example().to_string();
    let prod = LoadOptions {
        environment: Some("prod".into()),
        ..LoadOptions::default()
    };
    assert!(load_with(&text, &prod).is_ok());
    let staging = LoadOptions {
        environment: Some("staging".into()),
        ..LoadOptions::default()
    };
    let err = load_with(&text, &staging).err().unwrap().to_string();
    assert_eq!(
        err,
        "environment: this policy is for environment \"prod\", but this proxy declares environment \"staging\"; refusing it"
    );
    let mut p = example();
    p.as_object_mut().unwrap().remove("environment");
    assert!(load_with(&p.to_string(), &prod).is_err());
    assert!(
        load(&p.to_string()).is_ok(),
        "no declared environment, no guard"
    );
}

#[test]
fn request_only_hosts_refuse_settings_that_need_the_response() {
    let request_only = LoadOptions {
        request_only: true,
        ..LoadOptions::default()
    };
    // The example leaves the event and the upstream metrics on by default: both refused, each
    // by its place, with nothing else wrong.
    let mut p = example();
    p["settings"] = json!({"response_headers": true});
    let errors = load_with(&p.to_string(), &request_only).err().unwrap();
    let places: Vec<String> = errors
        .lines()
        .iter()
        .map(|l| l.split(':').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        places,
        [
            "settings.exposure_event",
            "settings.upstream_metrics",
            "settings.response_headers"
        ]
    );
    assert!(
        errors.lines()[0].contains("(it defaults to true)")
            && !errors.lines()[2].contains("defaults"),
        "{errors}"
    );
    // The lean settings load, and evaluate as in the full module.
    p["settings"] = json!({"exposure_event": false, "upstream_metrics": false});
    let lean = load_with(&p.to_string(), &request_only).unwrap();
    let full = load(&p.to_string()).unwrap();
    let request = chat("acme", "pro", "c-1");
    assert_eq!(
        lean.eval_json(&lean.evaluate(&request)),
        full.eval_json(&full.evaluate(&request))
    );
}

#[test]
fn swap_summary_names_what_changed() {
    let old_text = example().to_string();
    let old = load(&old_text).unwrap();
    let mut p = example();
    p["version"] = json!("2026-11-21.4");
    p["flags"][1]["enabled"] = json!(false);
    p["flags"][0]["rules"][2]["split"] =
        json!([{"variation": "candidate", "weight": 20}, {"variation": "control", "weight": 80}]);
    p["consent"]["tenants"]["hooli"] = json!({"support_copilot": {"state": "opt_out", "actor": "a", "at": "2026-11-22T10:00:00Z"}});
    p["consent"]["tenants"]["initech"]["agent_actions"]["state"] = json!("opt_out");
    let removed = p["flags"].as_array_mut().unwrap().remove(1);
    let mut renamed = removed.clone();
    renamed["key"] = json!("agent_tools_v2");
    p["flags"].as_array_mut().unwrap().push(renamed);
    let new_text = p.to_string();
    let new = load(&new_text).unwrap();
    let summary = summarize_change(Some(&old), &new);
    assert!(
        summary.contains("flags added [agent_tools_v2]"),
        "{summary}"
    );
    assert!(summary.contains("flags removed [agent_tools]"), "{summary}");
    assert!(
        summary.contains("split support_answer_model_route rule \"paid canary\": candidate=5 control=95 -> candidate=20 control=80"),
        "{summary}"
    );
    assert!(
        summary.contains("consent records: 1 added, 0 removed, 1 changed"),
        "{summary}"
    );
    assert_ne!(content_hash(&old_text), content_hash(&new_text));
    assert_eq!(content_hash(&old_text).len(), 32);

    let mut k = example();
    k["flags"][0]["enabled"] = json!(false);
    let killed = load(&k.to_string()).unwrap();
    let s = summarize_change(Some(&old), &killed);
    assert_eq!(
        s,
        "kill switch support_answer_model_route: ON (flag disabled)"
    );
    assert_eq!(
        summarize_change(Some(&old), &old),
        "no flag, split, kill-switch or consent changes"
    );
    assert!(
        summarize_change(None, &old).starts_with("first policy: 2 flag(s), 2 consent record(s)")
    );
}

/// Flags that share a unit share its pseudonym within a request (the engine hashes each unit
/// once per request), and each flag's pseudonym is the one it gets when it is alone in the
/// policy: for six distinct units in mixed order, more than the engine keeps per request.
#[test]
fn each_flag_gets_its_own_units_pseudonym() {
    let units = [
        "user",
        "conversation",
        "user",
        "tenant",
        "plan",
        "region",
        "app",
        "conversation",
        "app",
    ];
    let flag = |i: usize, unit: &str| {
        json!({
            "key": format!("f{i}"),
            "unit": unit,
            "variations": {"a": {}, "b": {}},
            "off_variation": "a",
            "default": {"split": [{"variation": "a", "weight": 1}, {"variation": "b", "weight": 1}]}
        })
    };
    let policy_of = |flags: Vec<Value>| {
        let p = json!({
            "version": "units-1",
            "context": {
                "tenant": {"header": "x-tenant-id"},
                "user": {"header": "x-user-id"},
                "conversation": {"header": "x-conversation-id"},
                "plan": {"header": "x-plan"},
                "region": {"header": "x-region"},
                "app": {"header": "x-app"}
            },
            "settings": {"pseudonym_key": KEY},
            "flags": flags
        });
        load(&p.to_string()).unwrap()
    };
    let req = Request {
        path: "/v1/chat/completions".into(),
        headers: [
            ("x-tenant-id", "acme"),
            ("x-user-id", "u-1"),
            ("x-conversation-id", "c-1"),
            ("x-plan", "pro"),
            ("x-region", "eu"),
            ("x-app", "web"),
        ]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect(),
        ..Request::default()
    };
    let all = policy_of(units.iter().enumerate().map(|(i, u)| flag(i, u)).collect());
    let together = all.evaluate(&req);
    assert_eq!(together.decisions.len(), units.len());
    for (i, unit) in units.iter().enumerate() {
        let alone = policy_of(vec![flag(i, unit)]);
        let alone = alone.evaluate(&req);
        let expected = alone.decisions[0].unit_pseudonym;
        assert!(expected.is_some(), "flag {i} has no pseudonym");
        assert_eq!(
            together.decisions[i].unit_pseudonym, expected,
            "flag {i} ({unit})"
        );
    }
    // Distinct units, distinct pseudonyms; the same unit, the same one.
    let of = |i: usize| together.decisions[i].unit_pseudonym;
    assert_eq!(of(0), of(2));
    assert_eq!(of(1), of(7));
    assert_eq!(of(6), of(8));
    let distinct: std::collections::HashSet<_> = (0..units.len()).map(of).collect();
    assert_eq!(distinct.len(), 6);
}
