//! testdata/golden.json through the filter: every case's route, reject and decisions must
//! match the reviewed expectation, and the filter must agree with the native engine.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use switchyard_host_tests::{Action, FakeHost, HttpRequest};

use crate::common;

/// A golden case's request, for the filter (as Envoy would present it) and for the engine
/// (as `switchyard eval` reads it).
fn requests(request: &Value) -> (HttpRequest, switchyard_policy::Request<'static>) {
    let text = |key: &str| request.get(key).and_then(Value::as_str).unwrap_or("");
    let mut http = HttpRequest::empty();
    for (pseudo, key) in [
        (":method", "method"),
        (":path", "path"),
        (":authority", "host"),
    ] {
        if !text(key).is_empty() {
            http = http.header(pseudo, text(key));
        }
    }
    if !text("source_ip").is_empty() {
        http = http.source_address(common::source_address(text("source_ip")));
    }
    let mut headers = Vec::new();
    if let Some(map) = request.get("headers").and_then(Value::as_object) {
        for (name, value) in map {
            let value = value
                .as_str()
                .unwrap_or_else(|| panic!("header {name} is not a string"));
            http = http.header(name, value);
            headers.push((name.clone().into(), value.to_string().into()));
        }
    }
    let native = switchyard_policy::Request {
        method: text("method").to_string().into(),
        path: text("path").to_string().into(),
        host: text("host").to_string().into(),
        source_ip: text("source_ip").to_string().into(),
        headers,
    };
    (http, native)
}

fn policy_text(spec: &Value) -> String {
    match spec {
        Value::String(path) => common::read_repo_file(path),
        object => object.to_string(),
    }
}

const DECISION_FIELDS: [&str; 8] = [
    "flag",
    "variation",
    "cluster",
    "reason",
    "error",
    "rule",
    "bucket",
    "attributes",
];

#[test]
fn golden_cases_match_through_the_filter_and_the_engine() {
    run_golden_cases(common::host_with);
}

/// The same cases with each policy given to the filter as a `google.protobuf.Struct` (its
/// keys in reverse order, as protobuf keeps none): the decisions must not change.
#[test]
fn golden_cases_match_with_each_policy_given_as_a_struct() {
    run_golden_cases(common::host_with_struct);
}

fn run_golden_cases(configure: fn(&str) -> FakeHost) {
    let golden: Value = serde_json::from_str(&common::read_repo_file("testdata/golden.json"))
        .expect("testdata/golden.json is JSON");
    let policies: BTreeMap<String, String> = golden["policies"]
        .as_object()
        .expect("golden.json has policies")
        .iter()
        .map(|(name, spec)| (name.clone(), policy_text(spec)))
        .collect();
    let cases = golden["cases"].as_array().expect("golden.json has cases");
    assert!(!cases.is_empty(), "golden.json has no cases");

    // One VM per policy, reused across its cases, as Envoy reuses a VM across requests.
    let mut hosts: BTreeMap<String, FakeHost> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("(unnamed)");
        let policy_name = case["policy"].as_str().expect("case names a policy");
        let text = policies
            .get(policy_name)
            .unwrap_or_else(|| panic!("case {name:?}: unknown policy {policy_name:?}"));
        let host = hosts
            .entry(policy_name.to_string())
            .or_insert_with(|| configure(text));
        let compiled = switchyard_policy::load(text).expect("golden policies are valid");
        let route_header = compiled.settings().route_header.clone();

        let (http, native_request) = requests(&case["request"]);
        let result = host
            .request(&http)
            .unwrap_or_else(|e| panic!("case {name:?}: the module trapped: {e:#}"));
        let expect = &case["expect"];
        let mut fail = |what: String| failures.push(format!("{name}: {what}"));

        // Route and reject, as Envoy would act on them.
        match &expect["reject"] {
            Value::Null => match result.upstream() {
                None => fail(format!(
                    "not forwarded (action {:?}, local reply {:?})",
                    result.request_action, result.local_reply
                )),
                Some(upstream) => {
                    let routed = upstream.get_str(&route_header);
                    if routed != expect["cluster"].as_str() {
                        fail(format!(
                            "route header {routed:?}, expected {}",
                            expect["cluster"]
                        ));
                    }
                    if upstream.get_all(&route_header).len() > 1 {
                        fail("more than one route header".into());
                    }
                }
            },
            reject => {
                let status = reject["status"].as_u64();
                match &result.local_reply {
                    Some(reply) if Some(u64::from(reply.status)) == status => {
                        let body: Value =
                            serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
                        for key in ["flag", "reason"] {
                            if reject.get(key).is_some() && body[key] != reject[key] {
                                fail(format!(
                                    "reject body {key} {}, expected {}",
                                    body[key], reject[key]
                                ));
                            }
                        }
                    }
                    other => fail(format!("local reply {other:?}, expected status {status:?}")),
                }
                if result.request_action == Action::Continue {
                    fail("a reject continued".into());
                }
            }
        }

        // The filter state: the same decisions, field by field.
        let state = common::exposure_json(&result);
        if state["cluster"] != expect["cluster"] {
            fail(format!(
                "filter state cluster {}, expected {}",
                state["cluster"], expect["cluster"]
            ));
        }
        if state["reject"]["status"] != expect["reject"]["status"] {
            fail(format!(
                "filter state reject {}, expected {}",
                state["reject"], expect["reject"]
            ));
        }
        let empty = Vec::new();
        let got = state["decisions"].as_array().unwrap_or(&empty);
        let want = expect["decisions"].as_array().unwrap_or(&empty);
        if got.len() != want.len() {
            fail(format!("{} decisions, expected {}", got.len(), want.len()));
        }
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            for field in DECISION_FIELDS {
                let g = g.get(field).unwrap_or(&Value::Null);
                let w = w.get(field).unwrap_or(&Value::Null);
                // An expectation without attributes means none.
                let w = if field == "attributes" && w.is_null() {
                    &json!({})
                } else {
                    w
                };
                if g != w {
                    fail(format!("decisions[{i}].{field} = {g}, expected {w}"));
                }
            }
        }

        // The native engine on the same request gives exactly the same object.
        let outcome = compiled.evaluate(&native_request);
        let native: Value = serde_json::from_str(&compiled.outcome_json(&outcome)).unwrap();
        if native != state {
            fail(format!(
                "filter state differs from the engine:\n  filter {state}\n  engine {native}"
            ));
        }
    }
    for host in hosts.values() {
        assert!(host.broken().is_none());
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
