//! Shared helpers for the filter tests: loading the module, policies, and the engine's view.

use std::path::PathBuf;

use switchyard_host_tests::{workspace_root, FakeHost, HttpRequest, LogLevel};

/// A fresh host with the release module loaded. Fails with the build command if the module
/// has not been built.
pub fn host() -> FakeHost {
    match FakeHost::load_default() {
        Ok(host) => host,
        Err(error) => panic!("{error:#}"),
    }
}

/// A fresh host configured with `policy`, which must be accepted.
/// A worker whose host knows `cluster` (a remote source's), configured with `policy`.
pub fn worker_with_cluster(policy: &serde_json::Value, cluster: &str) -> FakeHost {
    let mut host = host();
    host.add_cluster(cluster);
    configured(host, policy)
}

/// `host` configured with `policy`, which must be accepted.
pub fn configured(mut host: FakeHost, policy: &serde_json::Value) -> FakeHost {
    let text = serde_json::to_string_pretty(policy).unwrap();
    assert!(
        host.configure(text.as_bytes()).unwrap(),
        "{:#?}",
        host.logs()
    );
    host
}

/// Ticks until the host has made a call (at most `ticks` ticks); returns its token.
pub fn tick_until_call(host: &mut FakeHost, ticks: usize) -> Option<u32> {
    for _ in 0..ticks {
        host.advance_and_tick().unwrap();
        if let Some(call) = host.pending_http_calls().first() {
            return Some(call.token);
        }
    }
    None
}

/// The messages the module logged at exactly `level`.
pub fn messages_at(host: &FakeHost, level: LogLevel) -> Vec<String> {
    host.logs()
        .iter()
        .filter(|l| l.level == level)
        .map(|l| l.message.clone())
        .collect()
}

pub fn host_with(policy: &str) -> FakeHost {
    let mut host = host();
    let accepted = host.configure(policy.as_bytes()).unwrap();
    assert!(accepted, "policy refused; logs: {:#?}", host.logs());
    host
}

/// A fresh host configured with `policy` given as Envoy hands over a `google.protobuf.Struct`
/// configuration (serialized protobuf), every object's keys in reverse order: protobuf keeps
/// no key order, so the filter must not depend on it. The policy must be accepted.
pub fn host_with_struct(policy: &str) -> FakeHost {
    let mut host = host();
    let accepted = host.configure(&struct_bytes(policy)).unwrap();
    assert!(accepted, "Struct policy refused; logs: {:#?}", host.logs());
    host
}

/// `policy` (JSON text) as serialized `google.protobuf.Struct` bytes, keys reversed.
pub fn struct_bytes(policy: &str) -> Vec<u8> {
    fn reversed(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .rev()
                    .map(|(k, v)| (k, reversed(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(reversed).collect()),
            other => other,
        }
    }
    let doc: serde_json::Value = serde_json::from_str(policy).expect("policy is JSON");
    match reversed(doc) {
        serde_json::Value::Object(map) => crate::struct_encode::encode_struct(&map),
        other => panic!("a Struct policy must be an object, not {other}"),
    }
}

pub fn repo_path(relative: &str) -> PathBuf {
    workspace_root().join(relative)
}

pub fn read_repo_file(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The contract's example policy, as shipped in examples/.
pub fn example_policy() -> String {
    read_repo_file("examples/support-copilot/policy.json")
}

/// A request to the example's support-copilot route.
pub fn chat(tenant: &str, conversation: &str) -> HttpRequest {
    HttpRequest::new("POST", "/v1/chat/completions", "api.example")
        .header("x-tenant-id", tenant)
        .header("x-conversation-id", conversation)
        .source_address("10.1.2.3:55555")
}

/// The Envoy `source.address` for a bare IP: `ip:port`, or `[ip]:port` for IPv6.
pub fn source_address(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:40000")
    } else {
        format!("{ip}:40000")
    }
}

/// The filter-state JSON of a result, parsed.
pub fn exposure_json(result: &switchyard_host_tests::RequestResult) -> serde_json::Value {
    let text = result
        .filter_state_str("wasm.switchyard_exposure")
        .expect("filter state wasm.switchyard_exposure is set");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("filter state is not JSON ({e}): {text}"))
}
