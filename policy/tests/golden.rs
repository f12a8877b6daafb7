//! The shared golden cases (testdata/golden.json), also run by the host tests through the
//! compiled filter, by the JavaScript tests and by the Envoy suite through real Envoy
//! (`envoy/tests/test_golden.py`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use serde_json::Value;
use switchyard_policy::{load, Request};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn golden_cases_match() {
    let root = repo_root();
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("testdata/golden.json")).unwrap())
            .unwrap();
    let policies = golden["policies"].as_object().unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let path = policies[case["policy"].as_str().unwrap()].as_str().unwrap();
        let policy = load(&std::fs::read_to_string(root.join(path)).unwrap()).unwrap();
        let request = Request::from_json(&case["request"].to_string()).unwrap();
        let got: Value =
            serde_json::from_str(&policy.eval_json(&policy.evaluate(&request))).unwrap();
        assert_eq!(got, case["expect"], "golden case {name:?}");
    }
}

#[test]
fn golden_cases_cover_every_reason_and_step() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("testdata/golden.json")).unwrap(),
    )
    .unwrap();
    // Reasons and error codes as the expectations give them (not anywhere in the text: a case
    // name mentioning one would not count).
    let mut given = std::collections::BTreeSet::new();
    for case in golden["cases"].as_array().unwrap() {
        for d in case["expect"]["decisions"].as_array().unwrap() {
            for field in ["reason", "error"] {
                if let Some(v) = d[field].as_str() {
                    given.insert(v.to_string());
                }
            }
        }
    }
    for reason in [
        "TARGETING_MATCH",
        "SPLIT",
        "DEFAULT",
        "DISABLED",
        "CONSENT_DENIED",
        "ERROR",
        "TARGETING_KEY_MISSING",
    ] {
        assert!(
            given.contains(reason),
            "no golden case yields {reason}: {given:?}"
        );
    }
    let rejects = golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["expect"]["reject"].is_null())
        .count();
    assert!(rejects >= 2);
}
