//! switchyard's policy engine for JavaScript, built with wasm-bindgen (see `js/build.sh`).
//!
//! The same engine as the Envoy filter and the `switchyard` command, so the same policy and
//! request give the same decision, bucket included. Three functions:
//!
//! - `check(policyText)` → `{ok, errors: [{place, message}], summary}`, like `switchyard check`.
//! - `evaluate(policyText, request)` → one `switchyard eval` line as an object
//!   (`{cluster, reject, decisions: [{flag, variation, cluster, reason, error, rule, bucket,
//!   attributes}]}`); `request` is the eval input line as a JSON string or an object. Throws an
//!   `Error` for an invalid policy or request.
//! - `simulate(policyText, units?, seed?)` → the `switchyard simulate --json` report for
//!   `units` synthetic requests (default 10000, seed 1). Throws for an invalid policy.
//!
//! The `*_json` functions are the same operations on plain Rust values; they are what the native
//! tests exercise (calling into JavaScript only works inside a wasm32 host).

use serde_json::{json, Value};
use switchyard_policy::simulate::{DEFAULT_SEED, DEFAULT_UNITS};
use switchyard_policy::{load, CompiledPolicy, PolicyErrors, Request};
use wasm_bindgen::prelude::*;

/// The most synthetic requests `simulate` makes in one call, to keep a browser tab responsive.
pub const MAX_UNITS: usize = 1_000_000;

fn errors_json(errors: &PolicyErrors) -> Vec<Value> {
    let mut out: Vec<Value> = errors
        .iter()
        .map(|e| json!({"place": e.place, "message": e.message}))
        .collect();
    if errors.unlisted() > 0 {
        out.push(json!({"place": "", "message": format!("{} more problem(s) not listed", errors.unlisted())}));
    }
    out
}

fn errors_text(errors: &PolicyErrors) -> String {
    let lines = errors.lines();
    format!(
        "policy refused ({} error(s)):\n{}",
        errors.len(),
        lines.join("\n")
    )
}

/// What `switchyard check` prints for a valid policy, as data (and its text as `text`).
pub fn summary_json(policy: &CompiledPolicy) -> Value {
    let flags = policy.flags();
    let text = policy.summary();
    json!({
        "version": policy.version(),
        "environment": policy.environment(),
        "flags": flags.iter().map(|f| json!({
            "key": f.key,
            "variations": f.variations,
            "feature_class": f.feature_class,
            "enabled": f.enabled,
        })).collect::<Vec<_>>(),
        "segments": policy.segment_count(),
        "consent_tenants": policy.consent_tenant_count(),
        "text": text,
    })
}

/// `check` on plain values: `{ok, errors, summary}` (`summary` is null when not ok).
pub fn check_json(policy_text: &str) -> Value {
    match load(policy_text) {
        Ok(policy) => json!({"ok": true, "errors": [], "summary": summary_json(&policy)}),
        Err(errors) => json!({"ok": false, "errors": errors_json(&errors), "summary": null}),
    }
}

/// `evaluate` on plain values: the eval line, or a message saying what was wrong.
pub fn evaluate_json(policy_text: &str, request_json: &str) -> Result<Value, String> {
    let policy = load(policy_text).map_err(|e| errors_text(&e))?;
    let request = Request::from_json(request_json).map_err(|e| format!("bad request: {e}"))?;
    let line = policy.eval_json(&policy.evaluate(&request));
    serde_json::from_str(&line).map_err(|e| e.to_string())
}

/// `simulate` on plain values.
pub fn simulate_json(policy_text: &str, units: usize, seed: u64) -> Result<Value, String> {
    if units > MAX_UNITS {
        return Err(format!("at most {MAX_UNITS} units per simulation"));
    }
    switchyard_policy::simulate::simulate(policy_text, units, seed)
        .map(|report| report.to_json())
        .map_err(|e| errors_text(&e))
}

fn to_js(value: &Value) -> Result<JsValue, JsError> {
    js_sys::JSON::parse(&value.to_string()).map_err(|_| JsError::new("cannot build the result"))
}

/// Checks a policy: `{ok, errors: [{place, message}], summary}`.
#[wasm_bindgen(js_name = check)]
pub fn check(policy_text: &str) -> Result<JsValue, JsError> {
    to_js(&check_json(policy_text))
}

/// Evaluates one request (a JSON string or an object in the `switchyard eval` input format)
/// and returns its eval line as an object.
#[wasm_bindgen(js_name = evaluate)]
pub fn evaluate(policy_text: &str, request: JsValue) -> Result<JsValue, JsError> {
    let request_json = match request.as_string() {
        Some(s) => s,
        None if request.is_undefined() || request.is_null() => "{}".to_string(),
        None => js_sys::JSON::stringify(&request)
            .map(String::from)
            .map_err(|_| JsError::new("the request cannot be turned into JSON"))?,
    };
    let line = evaluate_json(policy_text, &request_json).map_err(|e| JsError::new(&e))?;
    to_js(&line)
}

/// Simulates `units` synthetic requests (default 10000) with `seed` (default 1) and returns
/// the report.
#[wasm_bindgen(js_name = simulate)]
pub fn simulate(
    policy_text: &str,
    units: Option<u32>,
    seed: Option<u32>,
) -> Result<JsValue, JsError> {
    let units = units.map_or(DEFAULT_UNITS, |u| u as usize);
    let seed = seed.map_or(DEFAULT_SEED, u64::from);
    let report = simulate_json(policy_text, units, seed).map_err(|e| JsError::new(&e))?;
    to_js(&report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/support-copilot/policy.json");

    #[test]
    fn check_reports_a_summary_or_every_error_with_its_place() {
        let ok = check_json(EXAMPLE);
        assert_eq!(ok["ok"], true);
        assert_eq!(ok["errors"], json!([]));
        assert_eq!(ok["summary"]["version"], "2026-11-21.3");
        assert_eq!(ok["summary"]["flags"][1]["key"], "agent_tools");
        assert!(ok["summary"]["text"]
            .as_str()
            .unwrap()
            .starts_with("ok: policy 2026-11-21.3 (prod): 2 flag(s)"));

        let bad = EXAMPLE.replacen("\"control\",", "\"canddate\",", 1);
        let report = check_json(&bad);
        assert_eq!(report["ok"], false);
        assert!(report["summary"].is_null());
        let errors = report["errors"].as_array().unwrap();
        assert!(!errors.is_empty());
        assert!(errors
            .iter()
            .all(|e| e["place"].is_string() && e["message"].is_string()));

        let not_json = check_json("{");
        assert_eq!(not_json["errors"][0]["place"], "");
    }

    #[test]
    fn evaluate_gives_the_eval_line() {
        let line = evaluate_json(
            EXAMPLE,
            r#"{"method": "POST", "path": "/v1/chat/completions", "headers": {"x-tenant-id": "acme"}}"#,
        )
        .unwrap();
        assert_eq!(line["cluster"], "support_model_b");
        assert_eq!(line["decisions"][0]["variation"], "candidate");
        assert_eq!(line["decisions"][0]["reason"], "TARGETING_MATCH");
        assert!(evaluate_json(EXAMPLE, "not json")
            .unwrap_err()
            .starts_with("bad request"));
        assert!(evaluate_json("{}", "{}")
            .unwrap_err()
            .starts_with("policy refused"));
    }

    #[test]
    fn every_golden_case_matches() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let golden: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{root}/testdata/golden.json")).unwrap(),
        )
        .unwrap();
        let cases = golden["cases"].as_array().unwrap();
        assert!(!cases.is_empty());
        for case in cases {
            let rel = golden["policies"][case["policy"].as_str().unwrap()]
                .as_str()
                .unwrap();
            let policy = std::fs::read_to_string(format!("{root}/{rel}")).unwrap();
            let line = evaluate_json(&policy, &case["request"].to_string()).unwrap();
            assert_eq!(line, case["expect"], "{}", case["name"]);
        }
    }

    #[test]
    fn simulate_reports_and_refuses_too_many_units() {
        let report = simulate_json(EXAMPLE, 1000, 1).unwrap();
        assert_eq!(report["requests"], 1000);
        assert_eq!(report, simulate_json(EXAMPLE, 1000, 1).unwrap());
        assert!(simulate_json(EXAMPLE, MAX_UNITS + 1, 1).is_err());
        assert!(simulate_json("{}", 10, 1).is_err());
    }
}
