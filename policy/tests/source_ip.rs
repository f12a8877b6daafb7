//! `needs_source_ip`: the filter looks the client address up only when a flag in scope for the
//! request reads it, and evaluating without the address then answers the same.

use switchyard_policy::{load, Request};

const POLICY: &str = r#"{
  "version": "ip-1",
  "context": {"tenant": {"header": "x-tenant-id"}},
  "segments": {"office": [{"attribute": "source_ip", "op": "cidr", "values": ["10.0.0.0/8"]}]},
  "flags": [
    {"key": "by_office", "match": {"path_prefix": "/office/"},
     "variations": {"on": {"cluster": "a"}, "off": {}}, "off_variation": "off",
     "rules": [{"when": [{"segment": "office"}], "serve": "on"}], "default": {"serve": "off"}},
    {"key": "by_ip", "match": {"path_prefix": "/ip/"},
     "variations": {"on": {"cluster": "b"}, "off": {}}, "off_variation": "off",
     "rules": [{"when": [{"attribute": "source_ip", "op": "cidr", "values": ["192.168.0.0/16"]}], "serve": "on"}],
     "default": {"serve": "off"}},
    {"key": "by_tenant", "variations": {"on": {"cluster": "c"}, "off": {}}, "off_variation": "off",
     "overrides": [{"attribute": "tenant", "values": ["acme"], "serve": "on"}], "default": {"serve": "off"}}
  ]
}"#;

fn request(path: &str, ip: &str) -> Request<'static> {
    Request {
        method: "GET".into(),
        path: path.to_string().into(),
        host: "api.example".into(),
        source_ip: ip.to_string().into(),
        headers: vec![("x-tenant-id".into(), "acme".into())],
    }
}

#[test]
fn only_flags_in_scope_that_read_the_address_need_it() {
    let policy = load(POLICY).unwrap();
    assert!(policy.uses_source_ip());
    assert!(
        policy.needs_source_ip(&request("/office/x", "")),
        "through a segment"
    );
    assert!(
        policy.needs_source_ip(&request("/ip/x", "")),
        "through a rule"
    );
    assert!(!policy.needs_source_ip(&request("/other", "")));
    // Out of those scopes the address changes nothing.
    let with = policy.evaluate(&request("/other", "10.1.2.3"));
    let without = policy.evaluate(&request("/other", ""));
    assert_eq!(with, without);
    // In scope it does.
    assert_eq!(
        policy.evaluate(&request("/office/x", "10.1.2.3")).cluster,
        Some("a")
    );
    assert_eq!(
        policy.evaluate(&request("/office/x", "172.16.0.1")).cluster,
        Some("c")
    );
}

#[test]
fn a_policy_without_source_ip_never_needs_it() {
    let policy = load(
        r#"{"version": "1", "flags": [{"key": "f", "variations": {"on": {"cluster": "a"}},
            "off_variation": "on", "default": {"serve": "on"}}]}"#,
    )
    .unwrap();
    assert!(!policy.uses_source_ip());
    assert!(!policy.needs_source_ip(&request("/", "10.0.0.1")));
}
