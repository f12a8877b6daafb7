//! Counters as documented in plugin/src/metrics.rs; exposure headers, filter state, and
//! response headers when the policy asks for them.

use std::collections::BTreeSet;

use switchyard_host_tests::HttpRequest;
use switchyard_policy::Reason;

use crate::common;

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every counter the documentation promises for a policy.
fn documented_metrics(policy: &str) -> BTreeSet<String> {
    let compiled = switchyard_policy::load(policy).unwrap();
    let mut names = BTreeSet::from(["switchyard.policy.load_failures".to_string()]);
    for flag in compiled.flags() {
        let key = sanitize(&flag.key);
        for variation in &flag.variations {
            for reason in Reason::ALL {
                names.insert(format!(
                    "switchyard.decisions.flag.{key}.variation.{}.reason.{}",
                    sanitize(variation),
                    reason.as_str()
                ));
            }
        }
        names.insert(format!(
            "switchyard.decisions.flag.{key}.variation.none.reason.CONSENT_DENIED"
        ));
        for variation in &flag.variations {
            let variation = sanitize(variation);
            for class in ["2xx", "3xx", "4xx", "5xx", "other"] {
                names.insert(format!(
                    "switchyard.upstream.flag.{key}.variation.{variation}.class.{class}"
                ));
            }
            names.insert(format!(
                "switchyard.upstream_latency.flag.{key}.variation.{variation}"
            ));
        }
        names.insert(format!("switchyard.consent_denied.flag.{key}"));
        names.insert(format!("switchyard.rejects.flag.{key}"));
    }
    names
}

#[test]
fn counters_are_defined_from_the_policy_and_count_decisions() {
    let policy = common::example_policy();
    let mut host = common::host_with(&policy);
    let defined: BTreeSet<String> = host.metrics().keys().cloned().collect();
    assert_eq!(defined, documented_metrics(&policy));
    assert!(host.metrics().values().all(|v| *v == 0));

    let flag = "switchyard.decisions.flag.support_answer_model_route.variation";
    host.request(&common::chat("acme", "c-1")).unwrap(); // override
    host.request(&common::chat("acme", "c-2")).unwrap(); // override
    host.request(&common::chat("globex", "c-1")).unwrap(); // opted out: fallback
    host.request(&common::chat("someone", "c-1")).unwrap(); // default
    host.request(&HttpRequest::new("GET", "/healthz", "api.example"))
        .unwrap(); // no flag

    // Counted in the filter, added to the host's counters on the next tick (the module asks
    // for one at least every second even without remote sources).
    assert!(host.metrics().values().all(|v| *v == 0), "not flushed yet");
    host.advance_and_tick().unwrap();
    assert!(host.state().tick_period_ms <= 1_000);
    let metrics = host.metrics();
    let expected = [
        (format!("{flag}.candidate.reason.TARGETING_MATCH"), 2),
        (format!("{flag}.fallback.reason.CONSENT_DENIED"), 1),
        (format!("{flag}.control.reason.DEFAULT"), 1),
        (
            "switchyard.consent_denied.flag.support_answer_model_route".to_string(),
            1,
        ),
    ];
    for (name, value) in &expected {
        assert_eq!(metrics.get(name), Some(value), "{name}");
    }
    // Decision counters only; the upstream status and latency stats move with every response.
    let counted: i64 = metrics
        .iter()
        .filter(|(name, _)| !name.starts_with("switchyard.upstream"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(counted, 5, "only the expected counters moved: {metrics:#?}");
    let upstream_2xx: i64 = metrics
        .iter()
        .filter(|(name, _)| name.starts_with("switchyard.upstream.") && name.ends_with(".2xx"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(upstream_2xx, 4, "four decided requests got a 200");

    // Request values never create counters.
    for i in 0..20 {
        host.request(&common::chat(&format!("tenant-{i}"), &format!("conv.{i}")))
            .unwrap();
    }
    assert_eq!(host.metrics().len(), defined.len());
}

#[test]
fn a_policy_swap_flushes_the_old_policys_counts() {
    let mut host = common::host_with(&common::example_policy());
    for i in 0..3 {
        host.request(&common::chat("acme", &format!("c-{i}")))
            .unwrap();
    }
    // A new version of the policy: the counts made under the old one reach the host at the
    // swap, not a tick later, and the new policy's tallies start from zero.
    let next = common::example_policy().replacen("\"2026-11-21.3\"", "\"2026-11-21.4\"", 1);
    assert_ne!(next, common::example_policy());
    assert!(
        host.configure(next.as_bytes()).unwrap(),
        "{:#?}",
        host.logs()
    );
    let name = "switchyard.decisions.flag.support_answer_model_route.variation.candidate.reason.TARGETING_MATCH";
    assert_eq!(host.metric(name), Some(3));
    host.request(&common::chat("acme", "c-9")).unwrap();
    host.tick().unwrap();
    assert_eq!(host.metric(name), Some(4));
}

#[test]
fn a_long_stream_does_not_hold_back_the_old_policys_counts() {
    // Stream 1 stays open across a swap; stream 2 starts before the swap and ends after it.
    // Both count into the old policy, which stream 1 still holds; stream 2's response count
    // must reach the host on the next tick, not when stream 1 ends.
    let mut host = common::host_with(&common::example_policy());
    let next = common::example_policy().replacen("\"2026-11-21.3\"", "\"2026-11-21.4\"", 1);
    let upstream =
        "switchyard.upstream.flag.support_answer_model_route.variation.candidate.class.2xx";
    host.request_with(&common::chat("acme", "long"), |host| {
        host.request_with(&common::chat("acme", "short"), |host| {
            assert!(host.configure(next.as_bytes())?);
            Ok(())
        })?;
        host.tick()?;
        assert_eq!(
            host.metric(upstream),
            Some(1),
            "the short stream's response, counted under the old policy"
        );
        Ok(())
    })
    .unwrap();
    host.tick().unwrap();
    assert_eq!(
        host.metric(upstream),
        Some(2),
        "and the long one's when it ends"
    );
}

#[test]
fn a_policy_swap_defines_no_metric_twice() {
    // Envoy adds a table entry for every definition, even of a name it has, and never removes
    // it: a swap (every changed consent document) must reuse the ids it has.
    let mut host = common::host_with(&common::example_policy());
    let defined = host.state().metric_definitions;
    assert!(defined > 10);
    for version in ["2026-11-21.4", "2026-11-21.5", "2026-11-21.6"] {
        let next =
            common::example_policy().replacen("\"2026-11-21.3\"", &format!("\"{version}\""), 1);
        assert!(host.configure(next.as_bytes()).unwrap());
    }
    assert_eq!(host.state().metric_definitions, defined);
    host.request(&common::chat("acme", "c-1")).unwrap();
    host.tick().unwrap();
    assert_eq!(
        host.metric("switchyard.decisions.flag.support_answer_model_route.variation.candidate.reason.TARGETING_MATCH"),
        Some(1),
        "the reused ids still count"
    );
}

#[test]
fn kill_switch_and_split_reasons_are_counted() {
    let mut host = common::host_with(&common::read_repo_file("testdata/policies/killswitch.json"));
    host.request(&common::chat("someone", "c-1").header("x-plan", "pro"))
        .unwrap();
    host.tick().unwrap();
    let disabled: i64 = host
        .metrics()
        .iter()
        .filter(|(name, _)| name.ends_with(".reason.DISABLED"))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(disabled, 1, "{:#?}", host.metrics());

    let mut host = common::host_with(&common::example_policy());
    let agent = HttpRequest::new("POST", "/v1/agent/run", "api.example")
        .header("x-tenant-id", "initech")
        .header("x-user-id", "u-1");
    host.request(&agent).unwrap();
    host.tick().unwrap();
    let split: i64 = host
        .metrics()
        .iter()
        .filter(|(name, _)| {
            name.starts_with("switchyard.decisions.flag.agent_tools.")
                && name.ends_with(".reason.SPLIT")
        })
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(split, 1, "{:#?}", host.metrics());
}

#[test]
fn metric_names_are_sanitized() {
    let policy = r#"{"version": "s-1", "flags": [{"key": "checkout.v2 model",
        "variations": {"on/1": {"cluster": "c1"}, "off": {}},
        "off_variation": "off", "default": {"serve": "on/1"}}]}"#;
    let mut host = common::host_with(policy);
    host.request(&HttpRequest::new("GET", "/", "api.example"))
        .unwrap();
    host.tick().unwrap();
    assert_eq!(
        host.metric("switchyard.decisions.flag.checkout_v2_model.variation.on_1.reason.DEFAULT"),
        Some(1)
    );
    for name in host.metrics().keys() {
        let segments: Vec<&str> = name.split('.').collect();
        assert!(
            segments.iter().all(|s| !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')),
            "{name}"
        );
    }
}

#[test]
fn exposure_headers_and_filter_state_match_the_engine() {
    let policy = common::example_policy();
    let compiled = switchyard_policy::load(&policy).unwrap();
    let mut host = common::host_with(&policy);
    let result = host
        .request(&common::chat("acme", "c-1").header("x-plan", "pro"))
        .unwrap();
    let upstream = result.upstream().expect("forwarded");

    let request = switchyard_policy::Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        host: "api.example".into(),
        source_ip: "10.1.2.3".into(),
        headers: vec![
            ("x-tenant-id".into(), "acme".into()),
            ("x-conversation-id".into(), "c-1".into()),
            ("x-plan".into(), "pro".into()),
        ],
    };
    let outcome = compiled.evaluate(&request);
    let exposure = compiled.exposure_headers(&outcome);
    assert!(exposure.len() >= 2, "{exposure:?}");
    for (name, value) in &exposure {
        assert_eq!(upstream.get_all(name), vec![value.as_bytes()], "{name}");
    }
    assert_eq!(
        upstream.get_str("x-switchyard-policy-version"),
        Some("2026-11-21.3")
    );
    assert_eq!(
        upstream.get_str("x-switchyard-attr-model-route"),
        Some("support_model_b")
    );
    let state = common::exposure_json(&result);
    let native: serde_json::Value = serde_json::from_str(&compiled.outcome_json(&outcome)).unwrap();
    assert_eq!(state, native);
    assert_eq!(state["version"], "2026-11-21.3");
    // The route header went in. Envoy re-picks the route because a module of ABI 0.2.1
    // changed request headers (exports.rs pins the ABI), so no `clear_route_cache` call.
    assert_eq!(
        upstream.get_str("x-switchyard-cluster"),
        Some("support_model_b")
    );
    assert!(
        result.foreign_calls.is_empty(),
        "{:?}",
        result.foreign_calls
    );
    // Off by default: nothing on the response.
    assert!(!result
        .response_headers
        .names()
        .iter()
        .any(|n| n.starts_with("x-switchyard-")));
}

#[test]
fn response_headers_when_enabled() {
    let mut policy: serde_json::Value = serde_json::from_str(&common::example_policy()).unwrap();
    policy["settings"] = serde_json::json!({"response_headers": true});
    let mut host = common::host_with(&policy.to_string());
    let request = common::chat("acme", "c-1")
        .response_header(":status", "200")
        .response_header("x-switchyard-exposure", "from upstream");
    let result = host.request(&request).unwrap();
    let upstream = result.upstream().unwrap();
    for name in [
        "x-switchyard-exposure",
        "x-switchyard-policy-version",
        "x-switchyard-attr-model-route",
    ] {
        assert_eq!(
            result.response_headers.get_all(name),
            upstream.get_all(name),
            "{name} on the response"
        );
        assert!(result.response_headers.contains(name), "{name}");
    }
    // A request no flag touches gets nothing on its response.
    let result = host
        .request(&HttpRequest::new("GET", "/healthz", "api.example"))
        .unwrap();
    assert!(!result
        .response_headers
        .names()
        .iter()
        .any(|n| n.starts_with("x-switchyard-")));
}
