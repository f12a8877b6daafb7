//! A consent reject is a local reply: status and a JSON body naming flag and reason, and the
//! request never continues upstream.

use serde_json::Value;
use switchyard_host_tests::{Action, HttpRequest};

use crate::common;

fn agent_request(tenant: Option<&str>) -> HttpRequest {
    let request = HttpRequest::new("POST", "/v1/agent/run", "api.example")
        .header("x-user-id", "u-1")
        .source_address("10.0.0.9:1234");
    match tenant {
        Some(tenant) => request.header("x-tenant-id", tenant),
        None => request,
    }
}

#[test]
fn a_consent_reject_sends_a_local_reply_and_stops() {
    let mut host = common::host_with(&common::example_policy());
    for tenant in [Some("acme"), None] {
        let result = host.request(&agent_request(tenant)).unwrap();
        assert_eq!(result.request_action, Action::Pause);
        assert!(result.upstream().is_none());
        let reply = result.local_reply.as_ref().expect("a local reply");
        assert_eq!(reply.status, 403);
        assert_eq!(
            reply.headers.get_str("content-type"),
            Some("application/json")
        );
        // An access log tells switchyard's reject from other local replies by these details.
        assert_eq!(reply.details, b"switchyard_consent_denied");
        assert_eq!(reply.grpc_status, -1);
        let body: Value = serde_json::from_slice(&reply.body).expect("the body is JSON");
        assert_eq!(body["flag"], "agent_tools", "{body}");
        assert_eq!(body["reason"], "CONSENT_DENIED", "{body}");
        // Nothing routed or stamped on a request that goes nowhere.
        assert!(!result.request_headers.contains("x-switchyard-cluster"));
        assert!(!result.request_headers.contains("x-switchyard-exposure"));
        assert!(result.foreign_calls.is_empty());
        // The access log still learns why.
        let state = common::exposure_json(&result);
        assert_eq!(state["reject"]["status"], 403);
        assert_eq!(state["reject"]["flag"], "agent_tools");
        assert_eq!(state["cluster"], Value::Null);
        // The local reply passes back through the filter without gaining exposure headers.
        assert!(!result
            .response_headers
            .names()
            .iter()
            .any(|n| n.starts_with("x-switchyard-")));
    }
    host.tick().unwrap();
    assert_eq!(host.metric("switchyard.rejects.flag.agent_tools"), Some(2));
    assert_eq!(
        host.metric("switchyard.consent_denied.flag.agent_tools"),
        Some(2)
    );
    assert_eq!(
        host.metric("switchyard.decisions.flag.agent_tools.variation.none.reason.CONSENT_DENIED"),
        Some(2)
    );
    assert!(host.broken().is_none());
}

#[test]
fn a_consenting_tenant_is_not_rejected() {
    let mut host = common::host_with(&common::example_policy());
    let result = host.request(&agent_request(Some("initech"))).unwrap();
    assert_eq!(result.request_action, Action::Continue);
    assert!(result.local_reply.is_none());
    let cluster = result.upstream().unwrap().get_str("x-switchyard-cluster");
    assert!(
        matches!(cluster, Some("agent_model" | "support_rules")),
        "{cluster:?}"
    );
    host.tick().unwrap();
    assert_eq!(host.metric("switchyard.rejects.flag.agent_tools"), Some(0));
}
