//! `source` and `consent_source`: where the Envoy filter fetches newer policies and consent
//! records. Checked like every other field: unknown fields, wrong types and out-of-range
//! values are errors with their place.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use switchyard_policy::{load, load_with, Awaiting, LoadOptions, RemoteSource, UntilFetched};

fn base() -> Value {
    json!({
        "version": "s-1",
        "context": {"tenant": {"header": "x-tenant-id"}},
        "consent": {
            "tenant_attribute": "tenant",
            "classes": {"support_copilot": {"mode": "opt_out"}}
        },
        "flags": [{
            "key": "f",
            "feature_class": "support_copilot",
            "variations": {"on": {"cluster": "a"}, "off": {"cluster": "b"}},
            "off_variation": "off",
            "on_consent_denied": {"serve": "off"},
            "default": {"serve": "on"}
        }]
    })
}

fn with(field: &str, value: Value) -> String {
    let mut doc = base();
    doc[field] = value;
    doc.to_string()
}

/// Every error as `place: message`.
fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn assert_error(text: &str, place: &str, fragment: &str) {
    let errors = errors(text);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{place}: ")) && e.contains(fragment)),
        "expected an error at {place} containing {fragment:?}; got {errors:#?}"
    );
}

#[test]
fn a_policy_without_sources_has_none() {
    let policy = load(&base().to_string()).unwrap();
    assert_eq!(policy.sources(), (None, None));
}

#[test]
fn a_full_source_is_read_as_written() {
    let text = with(
        "source",
        json!({"cluster": "policy_server", "path": "/policy.json", "authority": "policy.internal",
               "interval_ms": 2000, "timeout_ms": 750, "until_fetched": "bootstrap"}),
    );
    let policy = load(&text).unwrap();
    assert_eq!(
        policy.source(),
        Some(&RemoteSource {
            cluster: "policy_server".into(),
            path: "/policy.json".into(),
            authority: "policy.internal".into(),
            interval_ms: 2000,
            timeout_ms: 750,
            until_fetched: UntilFetched::Bootstrap,
        })
    );
    assert_eq!(policy.consent_source(), None);
}

#[test]
fn defaults_authority_is_the_cluster_and_timings_are_one_second_and_half() {
    let text = with("source", json!({"cluster": "policy_server", "path": "/p"}));
    let source = load(&text).unwrap().source().cloned().unwrap();
    assert_eq!(source.authority, "policy_server");
    assert_eq!(source.interval_ms, RemoteSource::DEFAULT_INTERVAL_MS);
    assert_eq!(source.timeout_ms, RemoteSource::DEFAULT_TIMEOUT_MS);
    // A short interval lowers the default timeout with it.
    let text = with(
        "source",
        json!({"cluster": "c", "path": "/p", "interval_ms": 200}),
    );
    assert_eq!(load(&text).unwrap().source().unwrap().timeout_ms, 200);
}

#[test]
fn consent_source_is_read_and_needs_a_consent_section() {
    let mut doc = base();
    doc["consent_source"] =
        json!({"cluster": "policy_server", "path": "/consent.json", "interval_ms": 500});
    let policy = load(&doc.to_string()).unwrap();
    let consent = policy.consent_source().unwrap();
    assert_eq!(
        (
            consent.path.as_str(),
            consent.interval_ms,
            consent.timeout_ms
        ),
        ("/consent.json", 500, 500)
    );

    doc.as_object_mut().unwrap().remove("consent");
    doc["flags"][0]
        .as_object_mut()
        .unwrap()
        .remove("feature_class");
    doc["flags"][0]
        .as_object_mut()
        .unwrap()
        .remove("on_consent_denied");
    assert_error(
        &doc.to_string(),
        "consent_source",
        "needs a consent section",
    );
}

#[test]
fn structural_errors_have_their_place() {
    assert_error(
        &with("source", json!("http://x/policy.json")),
        "source",
        "expected an object",
    );
    assert_error(
        &with("source", json!({"path": "/p"})),
        "source.cluster",
        "is required",
    );
    assert_error(
        &with("source", json!({"cluster": "c"})),
        "source.path",
        "is required",
    );
    assert_error(
        &with("source", json!({"cluster": "", "path": "/p"})),
        "source.cluster",
        "must not be empty",
    );
    assert_error(
        &with(
            "source",
            json!({"cluster": "c", "path": "/p", "intervall_ms": 5}),
        ),
        "source.intervall_ms",
        "unknown field",
    );
    assert_error(
        &with("source", json!({"cluster": "c", "path": "policy.json"})),
        "source.path",
        "starting with \"/\"",
    );
    assert_error(
        &with("source", json!({"cluster": "c", "path": "/a b"})),
        "source.path",
        "no spaces",
    );
    assert_error(
        &with(
            "source",
            json!({"cluster": "c", "path": "/p", "authority": "a b"}),
        ),
        "source.authority",
        "host name",
    );
    assert_error(
        &with("consent_source", json!({"cluster": "c", "path": 5})),
        "consent_source.path",
        "expected a string",
    );
}

#[test]
fn timings_are_bounded() {
    let cases = [
        (
            json!({"interval_ms": 99}),
            "source.interval_ms",
            "from 100 to 86400000",
        ),
        (
            json!({"interval_ms": 1.5}),
            "source.interval_ms",
            "whole number",
        ),
        (
            json!({"interval_ms": -1}),
            "source.interval_ms",
            "whole number",
        ),
        (
            json!({"interval_ms": "1000"}),
            "source.interval_ms",
            "expected a number",
        ),
        (
            json!({"timeout_ms": 0}),
            "source.timeout_ms",
            "from 1 to 60000",
        ),
        (
            json!({"timeout_ms": 60001, "interval_ms": 100000}),
            "source.timeout_ms",
            "from 1 to 60000",
        ),
        (
            json!({"timeout_ms": 2000, "interval_ms": 1000}),
            "source.timeout_ms",
            "more than interval_ms",
        ),
    ];
    for (extra, place, fragment) in cases {
        let mut source = json!({"cluster": "c", "path": "/p"});
        for (k, v) in extra.as_object().unwrap() {
            source[k] = v.clone();
        }
        assert_error(&with("source", source), place, fragment);
    }
    let ok = with(
        "source",
        json!({"cluster": "c", "path": "/p", "interval_ms": 86_400_000, "timeout_ms": 60_000}),
    );
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
}

#[test]
fn a_source_error_refuses_the_whole_policy_and_other_errors_are_still_reported() {
    let mut doc = base();
    doc["source"] = json!({"cluster": "c", "path": "nope"});
    doc["flags"][0]["off_variation"] = json!("missing");
    let errors = errors(&doc.to_string());
    assert!(
        errors.iter().any(|e| e.starts_with("source.path: ")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("flags[0].off_variation: ")),
        "{errors:#?}"
    );
}

#[test]
fn until_fetched_is_safe_by_default_and_names_its_words() {
    let source = |until: Option<&str>| {
        let mut s = json!({"cluster": "c", "path": "/p"});
        if let Some(until) = until {
            s["until_fetched"] = json!(until);
        }
        s
    };
    let read = |field: &str, s: Value| {
        let policy = load(&with(field, s)).unwrap();
        let (a, b) = policy.sources();
        a.or(b).unwrap().until_fetched
    };
    assert_eq!(read("source", source(None)), UntilFetched::Safe);
    assert_eq!(read("source", source(Some("off"))), UntilFetched::Safe);
    assert_eq!(
        read("source", source(Some("bootstrap"))),
        UntilFetched::Bootstrap
    );
    assert_eq!(
        read("consent_source", source(Some("deny"))),
        UntilFetched::Safe
    );
    assert_eq!(
        read("consent_source", source(Some("bootstrap"))),
        UntilFetched::Bootstrap
    );
    assert_error(
        &with("source", source(Some("deny"))),
        "source.until_fetched",
        "\"deny\" is not one of \"off\" (the default) or \"bootstrap\"",
    );
    assert_error(
        &with("consent_source", source(Some("off"))),
        "consent_source.until_fetched",
        "\"off\" is not one of \"deny\" (the default) or \"bootstrap\"",
    );
}

/// Awaiting a source's first document, the engine serves the safe answer with
/// `PROVIDER_NOT_READY`: consent-gated flags deny (consent first, as always), every flag
/// serves its off variation.
#[test]
fn awaiting_serves_the_safe_answer_with_provider_not_ready() {
    let mut doc = base();
    doc["flags"][0]["default"] = json!({"serve": "on"});
    doc["flags"].as_array_mut().unwrap().push(json!({
        "key": "g",
        "variations": {"on": {"cluster": "a"}, "off": {"cluster": "b"}},
        "off_variation": "off",
        "default": {"serve": "on"}
    }));
    let text = doc.to_string();
    let eval = |awaiting: Awaiting| {
        let options = LoadOptions {
            awaiting,
            ..LoadOptions::default()
        };
        let policy = load_with(&text, &options).unwrap();
        assert_eq!(policy.awaiting(), awaiting);
        let request = switchyard_policy::Request::from_json(
            r#"{"path": "/", "headers": {"x-tenant-id": "acme"}}"#,
        )
        .unwrap();
        let outcome = policy.evaluate(&request);
        outcome
            .decisions
            .iter()
            .map(|d| {
                format!(
                    "{}={} {} {}",
                    d.flag,
                    d.variation.unwrap_or("-"),
                    d.reason.as_str(),
                    d.error.map_or("-", |e| e.as_str())
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        eval(Awaiting::default()),
        ["f=on DEFAULT -", "g=on DEFAULT -"]
    );
    assert_eq!(
        eval(Awaiting {
            policy: false,
            consent: true
        }),
        ["f=off CONSENT_DENIED PROVIDER_NOT_READY", "g=on DEFAULT -"]
    );
    assert_eq!(
        eval(Awaiting {
            policy: true,
            consent: false
        }),
        [
            "f=off ERROR PROVIDER_NOT_READY",
            "g=off ERROR PROVIDER_NOT_READY"
        ]
    );
    assert_eq!(
        eval(Awaiting {
            policy: true,
            consent: true
        }),
        [
            "f=off CONSENT_DENIED PROVIDER_NOT_READY",
            "g=off ERROR PROVIDER_NOT_READY"
        ]
    );
}
