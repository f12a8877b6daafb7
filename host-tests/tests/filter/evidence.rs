//! Exposure evidence: the event in filter state `switchyard_event`, completed with what the
//! upstream did, and the per-variation guardrail counters.

use serde_json::{json, Value};
use switchyard_host_tests::HttpRequest;

use crate::common;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn policy_with_settings(settings: Value) -> String {
    let mut p: Value = serde_json::from_str(&common::example_policy()).unwrap();
    p["settings"] = settings;
    p.to_string()
}

fn event(result: &switchyard_host_tests::RequestResult) -> Value {
    serde_json::from_str(
        &result
            .filter_state_str("wasm.switchyard_event")
            .expect("no event"),
    )
    .unwrap()
}

#[test]
fn the_event_records_what_actually_ran() {
    let policy = policy_with_settings(json!({
        "fallback_header": "x-model-fallback",
        "pseudonym_key": "00112233445566778899aabbccddeeff"
    }));
    let mut host = common::host_with(&policy);
    let request = common::chat("acme", "conv-secret-1")
        .header("x-request-id", "req-42")
        .header("traceparent", TRACEPARENT)
        .response_header(":status", "503")
        .response_header("x-model-fallback", "true")
        .upstream_takes(412);
    let result = host.request(&request).unwrap();
    let e = event(&result);
    assert_eq!(e["request_id"], "req-42");
    assert_eq!(e["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(e["feature_flag.version"], "2026-11-21.3");
    assert_eq!(e["upstream"]["status"], 503);
    assert_eq!(e["upstream"]["fallback_used"], true);
    assert_eq!(
        e["upstream"]["duration_ms"], 412,
        "the host's clock moved 412 ms"
    );
    assert_eq!(
        host.metric(
            "switchyard.upstream_latency.flag.support_answer_model_route.variation.candidate"
        ),
        Some(412),
        "the latency histogram records the same duration"
    );
    let d = &e["decisions"][0];
    assert_eq!(d["feature_flag.key"], "support_answer_model_route");
    assert_eq!(d["feature_flag.result.variant"], "candidate");
    assert_eq!(d["feature_flag.result.reason"], "targeting_match");
    assert_eq!(d["feature_flag.context.id"].as_str().unwrap().len(), 32);
    assert_eq!(d["attributes"]["model_route"], "support_model_b");
    let text = e.to_string();
    assert!(
        !text.contains("conv-secret-1") && !text.contains("acme"),
        "raw id in {text}"
    );

    let ok = host
        .request(&common::chat("acme", "conv-2").response_header(":status", "200"))
        .unwrap();
    assert_eq!(event(&ok)["upstream"]["fallback_used"], false);
    host.tick().unwrap(); // counters reach the host on the root context's tick
    let m = "switchyard.upstream.flag.support_answer_model_route.variation.candidate.class";
    assert_eq!(host.metric(&format!("{m}.5xx")), Some(1));
    assert_eq!(host.metric(&format!("{m}.2xx")), Some(1));
    assert_eq!(host.metric(&format!("{m}.4xx")), Some(0));
}

#[test]
fn rejects_and_untouched_requests() {
    let mut host = common::host_with(&common::example_policy());
    let reject = HttpRequest::new("POST", "/v1/agent/run", "api.example")
        .header("x-tenant-id", "acme")
        .header("x-user-id", "u-1");
    let result = host.request(&reject).unwrap();
    let e = event(&result);
    assert_eq!(e["reject"], 403);
    assert!(
        e["upstream"].is_null(),
        "a reject never reached an upstream"
    );
    assert_eq!(
        e["decisions"][0]["feature_flag.result.reason"],
        "consent_denied"
    );

    let untouched = host
        .request(&HttpRequest::new("GET", "/healthz", "api.example"))
        .unwrap();
    assert!(untouched
        .filter_state_str("wasm.switchyard_event")
        .is_none());
}

#[test]
fn raw_unit_ids_only_when_the_policy_opts_in() {
    let mut host = common::host_with(&policy_with_settings(json!({"expose_unit_ids": true})));
    let result = host
        .request(&common::chat("hooli", "conv-visible").header("x-plan", "pro"))
        .unwrap();
    let e = event(&result);
    assert_eq!(e["decisions"][0]["unit_id"], "conv-visible");
    let upstream = result.upstream().unwrap();
    let exposure = String::from_utf8_lossy(upstream.get("x-switchyard-exposure").unwrap());
    assert!(exposure.contains("unit_id=\"conv-visible\""), "{exposure}");
}

/// The settings that leave switchyard only the route and the exposure header: what a mesh that
/// needs no evidence beyond the exposure list pays for (bench case h).
#[test]
fn the_lean_settings_route_and_expose_and_do_nothing_else() {
    let policy = policy_with_settings(json!({
        "version_header": false,
        "attribute_headers": false,
        "exposure_state": false,
        "exposure_event": false,
        "upstream_metrics": false
    }));
    let mut host = common::host_with(&policy);
    let result = host
        .request(&common::chat("acme", "conv-1").response_header(":status", "503"))
        .unwrap();
    let upstream = result.upstream().expect("forwarded");
    let owned: Vec<String> = upstream
        .names()
        .into_iter()
        .filter(|n| n.starts_with("x-switchyard-"))
        .collect();
    assert_eq!(owned, ["x-switchyard-cluster", "x-switchyard-exposure"]);
    let exposure = upstream.get_str("x-switchyard-exposure").unwrap();
    assert!(
        exposure.contains(";version=\"2026-11-21.3\";attr.model_route=\"support_model_b\""),
        "the exposure item still carries the version and attributes: {exposure}"
    );
    assert!(result.filter_state_str("wasm.switchyard_event").is_none());
    assert!(result
        .filter_state_str("wasm.switchyard_exposure")
        .is_none());
    // Nothing read on the response, no clock read, no upstream stats defined.
    let state = host.state();
    assert_eq!(state.header_value_reads, vec![], "one-header reads");
    assert_eq!(state.clock_reads, 0);
    host.tick().unwrap();
    let metrics = host.metrics();
    assert!(
        !metrics.keys().any(|m| m.starts_with("switchyard.upstream")),
        "{metrics:#?}"
    );
    let d = "switchyard.decisions.flag.support_answer_model_route.variation.candidate.reason.TARGETING_MATCH";
    assert_eq!(host.metric(d), Some(1), "decisions are still counted");

    // Upstream metrics off alone: the event still gets the upstream's status and time.
    let policy = policy_with_settings(json!({"upstream_metrics": false}));
    let mut host = common::host_with(&policy);
    let result = host
        .request(
            &common::chat("acme", "conv-1")
                .response_header(":status", "503")
                .upstream_takes(40),
        )
        .unwrap();
    let e = event(&result);
    assert_eq!(e["upstream"]["status"], 503);
    assert_eq!(e["upstream"]["duration_ms"], 40);
    assert!(!host
        .metrics()
        .keys()
        .any(|m| m.starts_with("switchyard.upstream")));
}

#[test]
fn filter_state_can_be_turned_off_and_metrics_stay() {
    let policy = policy_with_settings(json!({"exposure_state": false, "exposure_event": false}));
    let mut host = common::host_with(&policy);
    let result = host
        .request(&common::chat("acme", "conv-1").response_header(":status", "200"))
        .unwrap();
    assert!(result.filter_state_str("wasm.switchyard_event").is_none());
    assert!(result
        .filter_state_str("wasm.switchyard_exposure")
        .is_none());
    let upstream = result.upstream().expect("forwarded");
    assert_eq!(
        upstream.get_str("x-switchyard-cluster"),
        Some("support_model_b")
    );
    assert!(upstream.get("x-switchyard-exposure").is_some());
    host.tick().unwrap();
    let m = "switchyard.upstream.flag.support_answer_model_route.variation.candidate.class.2xx";
    assert_eq!(host.metric(m), Some(1));

    // Each can be chosen alone.
    let policy = policy_with_settings(json!({"exposure_state": false}));
    let mut host = common::host_with(&policy);
    let result = host.request(&common::chat("acme", "conv-1")).unwrap();
    assert!(result.filter_state_str("wasm.switchyard_event").is_some());
    assert!(result
        .filter_state_str("wasm.switchyard_exposure")
        .is_none());
}
