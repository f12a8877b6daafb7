//! The request-only module (`switchyard_plugin_request_only.wasm`): no response callback, so
//! Envoy enters the VM once less per request; it refuses every policy, configured or fetched,
//! whose settings need the response, and otherwise does on the request exactly what the full
//! module does.

use serde_json::{json, Value};
use switchyard_host_tests::{FakeHost, HttpRequest, LogLevel};

use crate::common;

/// The settings that keep the filter on the request side (README, lean settings).
fn lean_example() -> Value {
    let mut doc: Value = serde_json::from_str(&common::example_policy()).unwrap();
    doc["settings"] = json!({"exposure_state": false, "exposure_event": false,
                             "version_header": false, "attribute_headers": false,
                             "upstream_metrics": false});
    doc
}

fn request_only() -> FakeHost {
    FakeHost::load_request_only().unwrap_or_else(|error| panic!("{error:#}"))
}

fn errors(host: &FakeHost) -> Vec<String> {
    common::messages_at(host, LogLevel::Error)
}

#[test]
fn the_response_callback_is_not_exported() {
    let host = request_only();
    assert!(!host.exports("proxy_on_response_headers"));
    for name in [
        "proxy_on_request_headers",
        "proxy_on_context_create",
        "proxy_on_delete",
        "proxy_on_tick",
        "proxy_on_http_call_response",
    ] {
        assert!(host.exports(name), "{name} must be exported");
    }
    // The full module keeps it: the two builds are not swapped.
    assert!(common::host().exports("proxy_on_response_headers"));
}

#[test]
fn a_policy_that_needs_the_response_is_refused_with_its_places() {
    let mut host = request_only();
    // The example as shipped: the event and upstream metrics are on by default.
    assert!(!host.configure(common::example_policy().as_bytes()).unwrap());
    let refused = errors(&host);
    for place in ["settings.exposure_event", "settings.upstream_metrics"] {
        assert!(
            refused.iter().any(|e| e.starts_with(&format!(
                "switchyard: policy rejected: {place}: needs the response, which the \
                 request-only module (switchyard_plugin_request_only.wasm) never sees"
            ))),
            "{place}: {refused:#?}"
        );
    }
    assert_eq!(host.metric("switchyard.policy.load_failures"), Some(1));

    let mut debug = lean_example();
    debug["settings"]["response_headers"] = json!(true);
    let mut host = request_only();
    assert!(!host.configure(debug.to_string().as_bytes()).unwrap());
    assert!(
        errors(&host)
            .iter()
            .any(|e| e.contains("settings.response_headers: needs the response")),
        "{:#?}",
        errors(&host)
    );
}

/// Requests the example policy treats differently: an override, a split, a consent denial that
/// serves the fallback, a consent reject, a request out of every flag's scope, and client
/// copies of switchyard's headers.
fn mix() -> Vec<HttpRequest> {
    let agent = |tenant: &str, user: &str| {
        HttpRequest::new("POST", "/v1/agent/run", "api.example")
            .header("x-tenant-id", tenant)
            .header("x-user-id", user)
    };
    vec![
        common::chat("acme", "c-1"),
        common::chat("hooli", "c-2").header("x-plan", "pro"),
        common::chat("globex", "c-3"),
        agent("initech", "u-1"),
        agent("initech", "u-2"),
        agent("acme", "u-3"),
        HttpRequest::new("GET", "/healthz", "api.example"),
        common::chat("acme", "c-4")
            .header("x-switchyard-cluster", "agent_model")
            .header("X-Switchyard-Exposure", "forged"),
    ]
}

#[test]
fn it_routes_and_stamps_as_the_full_module_does() {
    let policy = lean_example();
    let mut lean = common::configured(request_only(), &policy);
    let mut full = common::configured(common::host(), &policy);
    for request in mix() {
        let (a, b) = (
            lean.request(&request).unwrap(),
            full.request(&request).unwrap(),
        );
        let sorted = |r: &switchyard_host_tests::RequestResult| {
            let mut pairs: Vec<(String, String)> = r
                .request_headers
                .iter_str()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            pairs.sort();
            pairs
        };
        assert_eq!(sorted(&a), sorted(&b), "{request:?}");
        assert_eq!(a.local_reply, b.local_reply, "{request:?}");
        assert_eq!(a.request_action, b.request_action, "{request:?}");
        assert!(a.response_action.is_none(), "no response callback ran");
        assert!(a.filter_state.is_empty() && b.filter_state.is_empty());
    }
    // What was decided was decided: the forged headers are gone, the override routed.
    let forged = lean.request(&mix()[7]).unwrap();
    full.request(&mix()[7]).unwrap();
    let upstream = forged.upstream().unwrap();
    assert_eq!(
        upstream.get("x-switchyard-cluster"),
        Some(&b"support_model_b"[..])
    );
    assert!(upstream
        .get("x-switchyard-exposure")
        .is_some_and(|v| v.starts_with(b"\"support_answer_model_route\"")));
    // Decisions are counted on the request side, as in the full module.
    lean.tick().unwrap();
    full.tick().unwrap();
    let decisions = |host: &FakeHost| {
        host.metrics()
            .into_iter()
            .filter(|(name, _)| name.starts_with("switchyard.decisions"))
            .collect::<Vec<_>>()
    };
    assert!(!decisions(&lean).is_empty());
    assert_eq!(decisions(&lean), decisions(&full));
}

#[test]
fn a_fetched_policy_that_needs_the_response_is_refused() {
    const CLUSTER: &str = "policy_server";
    let mut bootstrap = lean_example();
    bootstrap["source"] = json!({"cluster": CLUSTER, "path": "/policy.json", "interval_ms": 1000,
                                 "timeout_ms": 500, "until_fetched": "bootstrap"});
    let mut host = request_only();
    host.add_cluster(CLUSTER);
    let mut host = common::configured(host, &bootstrap);
    let token = common::tick_until_call(&mut host, 3).expect("the source is fetched");
    // The fetched document kills the support flag but turns the event back on.
    let mut fetched = bootstrap.clone();
    fetched["version"] = json!("v2");
    fetched["flags"][0]["enabled"] = json!(false);
    fetched["settings"]["exposure_event"] = json!(true);
    host.respond_http_call(token, 200, &[], fetched.to_string().as_bytes())
        .unwrap();
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(1));
    let warned = common::messages_at(&host, LogLevel::Warn);
    assert!(
        warned
            .iter()
            .any(|w| w.contains("settings.exposure_event: needs the response")),
        "{warned:#?}"
    );
    // The bootstrap is still in force: acme's override still routes to the candidate.
    let result = host.request(&common::chat("acme", "c-9")).unwrap();
    assert_eq!(
        result.upstream().unwrap().get("x-switchyard-cluster"),
        Some(&b"support_model_b"[..])
    );
}
