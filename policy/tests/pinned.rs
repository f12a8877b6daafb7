//! Behaviours a mutation-testing run (cargo-mutants over the engine's decision, request,
//! rendering and event code, 2026-11-23) found that no test pinned: each test here fails on
//! at least one mutant that every other test let through. Operators' bounds, header and cookie
//! reading, the owned-header test, the regex limits, the exposure header and reject body as
//! whole strings, and event timestamps over the calendar.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use switchyard_policy::{load, Request};

/// The variation flag "f" serves for `x-n: value` under a one-rule policy `n OP bound -> "b"`.
fn served(op: &str, bound: &str, value: &str) -> String {
    let policy = load(&format!(
        r#"{{"version": "v", "context": {{"n": {{"header": "x-n"}}}},
            "flags": [{{"key": "f", "variations": {{"a": {{}}, "b": {{}}}},
              "off_variation": "a", "default": {{"serve": "a"}},
              "rules": [{{"when": [{{"attribute": "n", "op": "{op}", "values": ["{bound}"]}}], "serve": "b"}}]}}]}}"#
    ))
    .unwrap();
    let req = Request {
        headers: vec![("x-n".into(), value.to_string().into())],
        ..Request::default()
    };
    policy.evaluate(&req).decisions[0]
        .variation
        .unwrap()
        .to_string()
}

#[test]
fn lte_is_not_gte() {
    assert_eq!(served("lte", "10", "9"), "b");
    assert_eq!(served("lte", "10", "10"), "b");
    assert_eq!(served("lte", "10", "11"), "a");
}

#[test]
fn semver_lte_and_gte_are_ranges_not_equality() {
    assert_eq!(served("semver_lte", "2.0.0", "1.9.0"), "b");
    assert_eq!(served("semver_lte", "2.0.0", "2.0.1"), "a");
    assert_eq!(served("semver_gte", "2.0.0", "2.1.0"), "b");
    assert_eq!(served("semver_gte", "2.0.0", "1.9.9"), "a");
}

/// One renamed header outside `x-switchyard-` (a single owned name, so a single length bit):
/// the client's copy of the route header must still count as owned and be removed.
#[test]
fn a_single_renamed_route_header_is_owned() {
    let policy = load(
        r#"{"version": "v", "settings": {"route_header": "x-route"},
            "flags": [{"key": "f", "variations": {"a": {}}, "off_variation": "a", "default": {"serve": "a"}}]}"#,
    )
    .unwrap();
    assert!(policy.is_owned_header("x-route"));
    assert!(!policy.is_owned_header("x-rout"));
    assert!(!policy.is_owned_header("x-other"));
}

/// The same pattern in two different clauses (here: on two attributes) must work in both: the
/// second clause reuses the compiled regex, it does not lose it.
#[test]
fn a_pattern_shared_by_two_clauses_matches_in_both() {
    let policy = load(
        r#"{"version": "v", "context": {"region": {"header": "x-region"}, "zone": {"header": "x-zone"}},
            "flags": [{"key": "f", "variations": {"a": {}, "b": {}, "c": {}},
              "off_variation": "a", "default": {"serve": "a"},
              "rules": [
                {"when": [{"attribute": "region", "op": "matches", "values": ["^eu-"]}], "serve": "b"},
                {"when": [{"attribute": "zone", "op": "matches", "values": ["^eu-"]}], "serve": "c"}]}]}"#,
    )
    .unwrap();
    let req = Request {
        headers: vec![("x-zone".into(), "eu-west-1".into())],
        ..Request::default()
    };
    assert_eq!(policy.evaluate(&req).decisions[0].variation, Some("c"));
}

/// Errors of a one-clause policy `region matches [pattern]`.
fn regex_errors(pattern: &str) -> Vec<String> {
    let doc = serde_json::json!({"version": "v", "context": {"region": {"header": "x-region"}},
        "flags": [{"key": "f", "variations": {"a": {}}, "off_variation": "a", "default": {"serve": "a"},
          "rules": [{"when": [{"attribute": "region", "op": "matches", "values": [pattern]}], "serve": "a"}]}]});
    match load(&doc.to_string()) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn regex_length_limit_is_exactly_max_regex_len() {
    let max = switchyard_policy::limits::MAX_REGEX_LEN;
    assert_eq!(regex_errors(&"a".repeat(max)), Vec::<String>::new());
    let errs = regex_errors(&"a".repeat(max + 1));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].ends_with(&format!(
            "the regular expression is {} bytes long; the limit is {max}",
            max + 1
        )),
        "{errs:?}"
    );
}

/// One pattern whose capture groups alone exceed the budget is refused, even as the first.
#[test]
fn a_first_regex_over_the_whole_budget_is_refused() {
    let max = switchyard_policy::limits::MAX_REGEXES;
    let errs = regex_errors(&format!("{}a", "()".repeat(max + 10)));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("over their budget"), "{errs:?}");
}

fn example_policy() -> switchyard_policy::CompiledPolicy {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/support-copilot/policy.json"
    );
    load(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A header of the same length as `x-tenant-id`, sent first, is not the tenant: globex (opted
/// out of support_copilot) stays on the consent fallback.
#[test]
fn another_header_of_the_same_length_is_not_read_as_the_tenant() {
    let policy = example_policy();
    let req = Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![
            ("x-client-id".into(), "acme".into()),
            ("x-tenant-id".into(), "globex".into()),
            ("x-conversation-id".into(), "c1".into()),
        ],
        ..Request::default()
    };
    let outcome = policy.evaluate(&req);
    let d = &outcome.decisions[0];
    assert_eq!(d.reason.as_str(), "CONSENT_DENIED");
    assert_eq!(d.variation, Some("fallback"));
    assert_eq!(outcome.cluster, Some("support_rules"));
}

/// Only a numeric port is stripped from the host.
#[test]
fn a_non_numeric_suffix_is_not_a_port() {
    let host = |h: &str| {
        Request {
            host: h.to_string().into(),
            ..Request::default()
        }
        .host_only()
        .into_owned()
    };
    assert_eq!(host("api.example:8443"), "api.example");
    assert_eq!(host("api.example:evil"), "api.example:evil");
}

/// `+` is a space only in a query string (a form), never in a cookie.
#[test]
fn a_plus_in_a_cookie_stays_a_plus() {
    let req = Request {
        path: "/x?q=a+b".into(),
        headers: vec![("cookie".into(), "sid=a+b".into())],
        ..Request::default()
    };
    assert_eq!(req.cookie("sid").as_deref(), Some("a+b"));
    assert_eq!(req.query_param("q").as_deref(), Some("a b"));
}

/// The exposure header names flag, variation and the variation's attributes (README's format).
#[test]
fn exposure_item_names_flag_variation_and_attributes() {
    let policy = example_policy();
    let req = Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("x-tenant-id".into(), "acme".into())],
        ..Request::default()
    };
    let exposure = policy.exposure_value(&policy.evaluate(&req)).unwrap();
    assert_eq!(
        exposure,
        "\"support_answer_model_route\";variation=\"candidate\";reason=TARGETING_MATCH;\
         version=\"2026-11-21.3\";attr.model_route=\"support_model_b\";\
         attr.prompt_version=\"support_v3\";attr.retrieval_profile=\"baseline\""
    );
}

/// A request line whose headers are not an object says what was expected.
#[test]
fn a_bad_headers_field_says_what_was_expected() {
    let err = Request::from_json(r#"{"headers": ["x"]}"#).unwrap_err();
    assert!(
        err.contains("expected an object of header names and values"),
        "{err}"
    );
}

/// A header value that is not a string is refused with what it is; a string, escaped or not, is
/// read.
#[test]
fn a_header_value_must_be_a_string() {
    for (value, kind) in [
        ("1", "a number"),
        ("-1", "a number"),
        ("1.5", "a number"),
        ("true", "a boolean"),
        ("null", "null"),
        ("[\"a\", {\"b\": []}]", "an array"),
        ("{\"a\": [1]}", "an object"),
    ] {
        let err =
            Request::from_json(&format!(r#"{{"headers": {{"x-plan": {value}}}}}"#)).unwrap_err();
        assert_eq!(
            err,
            format!("header \"x-plan\" must have a string value, found {kind}")
        );
    }
    let request =
        Request::from_json(r#"{"headers": {"x-plan": "pro", "x-region": "e\u0075"}}"#).unwrap();
    assert_eq!(request.header("x-plan"), Some("pro"));
    assert_eq!(request.header("x-region"), Some("eu"));
}

/// The 403 body names the flag and the reason (contract: "JSON body naming flag and reason").
#[test]
fn the_reject_body_names_flag_and_reason() {
    let policy = example_policy();
    let req = Request {
        path: "/v1/agent/run".into(),
        headers: vec![
            ("x-tenant-id".into(), "acme".into()),
            ("x-user-id".into(), "u1".into()),
        ],
        ..Request::default()
    };
    let outcome = policy.evaluate(&req);
    let reject = outcome.reject.as_ref().unwrap();
    assert_eq!(reject.status, 403);
    let body: serde_json::Value = serde_json::from_str(&policy.reject_body(reject)).unwrap();
    assert_eq!(body["error"], "consent_denied");
    assert_eq!(body["flag"], "agent_tools");
    assert_eq!(body["reason"], "CONSENT_DENIED");
}

/// Two decisions make a two-item RFC 8941 List: `item, item`, no leading separator.
#[test]
fn exposure_items_are_separated_by_a_comma() {
    let policy = load(
        r#"{"version": "v", "flags": [
            {"key": "f", "variations": {"a": {}}, "off_variation": "a", "default": {"serve": "a"}},
            {"key": "g", "variations": {"b": {}}, "off_variation": "b", "default": {"serve": "b"}}]}"#,
    )
    .unwrap();
    let exposure = policy
        .exposure_value(&policy.evaluate(&Request::default()))
        .unwrap();
    assert_eq!(
        exposure,
        r#""f";variation="a";reason=DEFAULT;version="v", "g";variation="b";reason=DEFAULT;version="v""#
    );
}

/// Every day from 1970 to mid-2402 renders as the calendar date, in the exposure event.
#[test]
fn event_timestamps_follow_the_calendar() {
    let policy = load(
        r#"{"version": "v", "flags": [{"key": "f", "variations": {"a": {}}, "off_variation": "a", "default": {"serve": "a"}}]}"#,
    )
    .unwrap();
    let outcome = policy.evaluate(&Request::default());
    let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    for day in 0u64..158_000 {
        // One instant per day, moving through the hours, minutes, seconds and milliseconds.
        let rem = (day * 7_919_993) % 86_400_000;
        let info = switchyard_policy::EventInfo {
            timestamp_ms: day * 86_400_000 + rem,
            ..Default::default()
        };
        let line = policy.exposure_event(&outcome, &info);
        let expect = format!(
            "{{\"timestamp\":\"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z\"",
            rem / 3_600_000,
            rem / 60_000 % 60,
            rem / 1000 % 60,
            rem % 1000
        );
        assert!(
            line.starts_with(&expect),
            "day {day}: {line} (expected {expect})"
        );
        let len = match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        d += 1;
        if d > len {
            d = 1;
            m += 1;
        }
        if m > 12 {
            m = 1;
            y += 1;
        }
    }
    assert_eq!(y, 2402, "the loop passes 2000-03-01 and 2400-02-29");
}

/// Two flags that both reject on consent: the first in document order gives the reply (the
/// mutation run made no mutant here, so it is pinned by hand).
#[test]
fn the_first_consent_reject_in_document_order_wins() {
    let policy = |first: u16, second: u16| {
        load(&format!(
            r#"{{"version": "v", "context": {{"tenant": {{"header": "x-tenant-id"}}}},
              "consent": {{"tenant_attribute": "tenant",
                "classes": {{"c1": {{"mode": "opt_in"}}, "c2": {{"mode": "opt_in"}}}}}},
              "flags": [
                {{"key": "f1", "feature_class": "c1", "variations": {{"a": {{}}}}, "off_variation": "a",
                  "on_consent_denied": {{"reject": {{"status": {first}}}}}, "default": {{"serve": "a"}}}},
                {{"key": "f2", "feature_class": "c2", "variations": {{"a": {{}}}}, "off_variation": "a",
                  "on_consent_denied": {{"reject": {{"status": {second}}}}}, "default": {{"serve": "a"}}}}]}}"#
        ))
        .unwrap()
    };
    let req = Request {
        headers: vec![("x-tenant-id".into(), "acme".into())],
        ..Request::default()
    };
    for (first, second) in [(403, 451), (451, 403)] {
        let p = policy(first, second);
        let outcome = p.evaluate(&req);
        let reject = outcome.reject.as_ref().unwrap();
        assert_eq!((reject.flag, reject.status), ("f1", first));
        assert_eq!(outcome.decisions.len(), 2, "both decisions are recorded");
    }
}
