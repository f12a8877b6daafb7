//! The "large" policy fixture: 20 flags of 8 rules mixing operators, 10,000 consent tenant
//! records, two segments of 5,000 values each; and requests with 8 headers and a cookie.
//! Deterministic, so every run measures the same thing. Also printed by
//! `cargo run -p switchyard-policy --example large-policy` for the Envoy benchmark.

#![allow(dead_code)]

use serde_json::{json, Value};

pub const FLAGS: usize = 20;
pub const TENANT_RECORDS: usize = 10_000;
pub const SEGMENT_VALUES: usize = 5_000;

pub fn large_policy() -> String {
    let mut tenants = serde_json::Map::new();
    for i in 0..TENANT_RECORDS {
        let (class, state) = match i % 3 {
            0 => ("support_copilot", "opt_out"),
            1 => ("agent_actions", "opt_in"),
            _ => ("agent_actions", "opt_out"),
        };
        tenants.insert(
            format!("tenant-{i:05}"),
            json!({class: {"state": state, "actor": format!("admin@t{i}.example"), "at": "2026-06-01T10:00:00Z"}}),
        );
    }
    let seg = |prefix: &str| -> Vec<Value> {
        (0..SEGMENT_VALUES)
            .map(|i| json!(format!("{prefix}-{i:05}")))
            .collect()
    };
    let flags: Vec<Value> = (0..FLAGS)
        .map(|f| {
            let class = if f % 2 == 0 { "support_copilot" } else { "agent_actions" };
            json!({
                "key": format!("flag_{f:02}"),
                "match": {"path_prefix": "/v1/"},
                "feature_class": class,
                "unit": "conversation",
                "variations": {
                    "control": {"cluster": format!("model_a_{f}"), "attributes": {"model_route": "a", "prompt_version": format!("p{f}")}},
                    "candidate": {"cluster": format!("model_b_{f}"), "attributes": {"model_route": "b", "prompt_version": format!("p{f}b")}},
                    "fallback": {"cluster": "rules_engine", "attributes": {"model_route": "none"}}
                },
                "off_variation": "control",
                "on_consent_denied": {"serve": "fallback"},
                "overrides": [{"attribute": "tenant", "values": [format!("vip-{f}")], "serve": "candidate"}],
                "rules": [
                    {"name": "regulated", "when": [{"segment": "regulated"}], "serve": "control"},
                    {"name": "staff", "when": [{"segment": "staff"}, {"attribute": "plan", "op": "in", "values": ["internal"]}], "serve": "candidate"},
                    {"name": "eu north", "when": [{"attribute": "region", "op": "matches", "values": ["^eu-north-[0-9]+$"]}], "serve": "control"},
                    {"name": "old apps", "when": [{"attribute": "app_version", "op": "semver_lt", "values": ["1.0.0"]}], "serve": "control"},
                    {"name": "office", "when": [{"attribute": "source_ip", "op": "cidr", "values": ["192.168.0.0/16"]}], "serve": "candidate"},
                    {"name": "tiny", "when": [{"attribute": "seats", "op": "lt", "values": [2]}, {"attribute": "region", "op": "starts_with", "values": ["ap-"]}], "serve": "control"},
                    {"name": "session debug", "when": [{"attribute": "session", "op": "ends_with", "values": ["-debug"]}], "serve": "candidate"},
                    {"name": "paid canary", "when": [{"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]}, {"attribute": "region", "op": "not_in", "values": ["cn-1"]}],
                     "split": [{"variation": "candidate", "weight": 10}, {"variation": "control", "weight": 90}]}
                ],
                "default": {"split": [{"variation": "candidate", "weight": 1}, {"variation": "control", "weight": 99}]}
            })
        })
        .collect();
    json!({
        "version": "large-1",
        "environment": "bench",
        "context": {
            "tenant": {"header": "x-tenant-id"}, "user": {"header": "x-user-id"},
            "conversation": {"header": "x-conversation-id"}, "plan": {"header": "x-plan"},
            "region": {"header": "x-region"}, "app_version": {"header": "x-app-version"},
            "seats": {"header": "x-seats"}, "session": {"cookie": "sid"}
        },
        "consent": {
            "tenant_attribute": "tenant",
            "classes": {"support_copilot": {"mode": "opt_out"}, "agent_actions": {"mode": "opt_in"}},
            "tenants": tenants
        },
        "segments": {
            "regulated": [{"attribute": "tenant", "op": "in", "values": seg("bank")}],
            "staff": [{"attribute": "tenant", "op": "in", "values": seg("staff")}]
        },
        "flags": flags
    })
    .to_string()
}

/// Request `i` of the benchmark mix: 8 headers and a cookie; tenants cycle through consented,
/// opted-out, unknown and segment members, so every step of evaluation is exercised.
pub fn request_headers(i: usize) -> Vec<(String, String)> {
    let tenant = match i % 4 {
        0 => format!("tenant-{:05}", (i * 7) % TENANT_RECORDS),
        1 => format!("bank-{:05}", (i * 13) % SEGMENT_VALUES),
        2 => format!("unknown-{i}"),
        _ => format!("tenant-{:05}", (i * 31 + 1) % TENANT_RECORDS),
    };
    vec![
        ("x-tenant-id".into(), tenant),
        ("x-user-id".into(), format!("user-{}", i % 1000)),
        ("x-conversation-id".into(), format!("conv-{i:08x}")),
        (
            "x-plan".into(),
            ["free", "pro", "enterprise", "team"][i % 4].into(),
        ),
        (
            "x-region".into(),
            ["eu-west-1", "us-east-1", "ap-south-1", "eu-north-1"][i % 4].into(),
        ),
        (
            "x-app-version".into(),
            ["1.4.2", "0.9.1", "2.0.0-rc.1"][i % 3].into(),
        ),
        ("x-seats".into(), (i % 50).to_string()),
        ("user-agent".into(), "bench-client/1.0".into()),
        ("cookie".into(), format!("theme=dark; sid=s{i:06}; lang=en")),
    ]
}
