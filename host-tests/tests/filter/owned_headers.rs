//! Client copies of switchyard's headers never reach upstream, whether or not a flag applies.

use switchyard_host_tests::HttpRequest;

use crate::common;

/// Every way a client might try to pick a route or forge exposure data.
fn with_forged_headers(request: HttpRequest) -> HttpRequest {
    request
        .header("x-switchyard-cluster", "client_picked")
        .header("X-Switchyard-Cluster", "client_picked_again")
        .header("x-switchyard-exposure", "\"forged\";variation=\"x\"")
        .header("x-switchyard-policy-version", "forged")
        .header("x-switchyard-attr-model-route", "forged")
        .header("x-switchyard-anything-else", "forged")
        .header(b"x-switchyard-\xff", b"forged")
        .header("x-keep-me", "kept")
}

fn assert_no_client_copies(upstream: &switchyard_host_tests::HeaderMap) {
    for (name, value) in upstream.iter() {
        if name.starts_with(b"x-switchyard-") {
            assert!(
                !value.windows(6).any(|w| w == b"forged") && !value.starts_with(b"client_picked"),
                "client copy survived: {}: {}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            );
        }
    }
    assert_eq!(upstream.get_str("x-keep-me"), Some("kept"));
}

#[test]
fn client_copies_are_removed_when_no_flag_applies() {
    let mut host = common::host_with(&common::example_policy());
    let request = with_forged_headers(HttpRequest::new("GET", "/healthz", "api.example"));
    let result = host.request(&request).unwrap();
    let upstream = result.upstream().expect("forwarded");
    assert_no_client_copies(upstream);
    let switchyard: Vec<String> = upstream
        .names()
        .into_iter()
        .filter(|n| n.starts_with("x-switchyard-"))
        .collect();
    assert!(switchyard.is_empty(), "{switchyard:?}");
    // Nothing was decided, so nothing was stamped.
}

#[test]
fn client_copies_are_replaced_when_a_flag_routes() {
    let mut host = common::host_with(&common::example_policy());
    let request = with_forged_headers(common::chat("acme", "c-1"));
    let result = host.request(&request).unwrap();
    let upstream = result.upstream().expect("forwarded");
    assert_no_client_copies(upstream);
    assert_eq!(
        upstream.get_all("x-switchyard-cluster"),
        vec![b"support_model_b".as_slice()]
    );
    assert_eq!(upstream.get_all("x-switchyard-exposure").len(), 1);
    assert!(!upstream.contains("x-switchyard-anything-else"));
}

#[test]
fn a_client_copy_past_a_damaged_map_is_still_replaced() {
    // Once every client copy is removed the filter adds its headers; if the map cannot be
    // parsed whole, a copy may hide past the damage, so the filter replaces instead.
    let mut host = common::host_with(&common::example_policy());
    let request = common::chat("acme", "c-1").header("x-switchyard-cluster", "client_picked");
    host.state_mut().pairs_cut_tail = 2; // the last entry (the client's copy) does not fit
    let result = host.request(&request).unwrap();
    let upstream = result.upstream().expect("forwarded");
    assert_eq!(
        upstream.get_all("x-switchyard-cluster"),
        vec![b"support_model_b".as_slice()]
    );
    assert_eq!(upstream.get_all("x-switchyard-exposure").len(), 1);
    // Whole again: the copy is seen, removed, and the filter's header added once.
    host.state_mut().pairs_cut_tail = 0;
    let result = host.request(&request).unwrap();
    assert_eq!(
        result.upstream().unwrap().get_all("x-switchyard-cluster"),
        vec![b"support_model_b".as_slice()]
    );
}

#[test]
fn client_copies_are_removed_before_a_reject() {
    let mut host = common::host_with(&common::example_policy());
    let request = with_forged_headers(
        HttpRequest::new("POST", "/v1/agent/run", "api.example")
            .header("x-tenant-id", "acme")
            .header("x-user-id", "u-1"),
    );
    let result = host.request(&request).unwrap();
    assert!(result.local_reply.is_some());
    assert!(!result
        .request_headers
        .names()
        .iter()
        .any(|n| n.starts_with("x-switchyard-")));
}

#[test]
fn custom_header_names_from_settings_are_owned_too() {
    let mut policy: serde_json::Value = serde_json::from_str(&common::example_policy()).unwrap();
    policy["settings"] = serde_json::json!({
        "route_header": "x-route-to",
        "exposure_header": "x-ai-exposure",
        "version_header": "x-ai-policy",
        "attribute_headers": {"model_route": "x-model-route"}
    });
    let mut host = common::host_with(&policy.to_string());
    for request in [
        HttpRequest::new("GET", "/healthz", "api.example"),
        common::chat("acme", "c-1"),
    ] {
        let request = request
            .header("x-route-to", "client_picked")
            .header("x-ai-exposure", "forged")
            .header("x-ai-policy", "forged")
            .header("x-switchyard-cluster", "client_picked");
        let result = host.request(&request).unwrap();
        let upstream = result.upstream().expect("forwarded");
        for name in [
            "x-route-to",
            "x-ai-exposure",
            "x-ai-policy",
            "x-switchyard-cluster",
        ] {
            for value in upstream.get_all(name) {
                assert!(
                    value != b"forged" && value != b"client_picked",
                    "{name} survived: {}",
                    String::from_utf8_lossy(value)
                );
            }
        }
    }
    let result = host.request(&common::chat("acme", "c-1")).unwrap();
    let upstream = result.upstream().unwrap();
    assert_eq!(upstream.get_str("x-route-to"), Some("support_model_b"));
    assert!(upstream.contains("x-ai-exposure"));
    assert!(!upstream.contains("x-switchyard-cluster"));
    // Each header goes out under its setting's name, and only there.
    assert_eq!(upstream.get_str("x-ai-policy"), Some("2026-11-21.3"));
    assert!(!upstream.contains("x-switchyard-policy-version"));
    assert_eq!(upstream.get_str("x-model-route"), Some("support_model_b"));
    assert!(!upstream.contains("x-switchyard-attr-model-route"));
    assert_eq!(
        upstream.get_str("x-switchyard-attr-prompt-version"),
        Some("support_v3"),
        "attributes without a setting keep the default name"
    );
}
