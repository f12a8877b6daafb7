//! One audit line per configured policy change, however many root contexts (workers) configure
//! it: the first logs `policy swap: OLD -> NEW, hash, what changed`, the others stay quiet.

use crate::common;

fn swap_lines(host: &switchyard_host_tests::FakeHost) -> Vec<String> {
    host.logs()
        .iter()
        .map(|l| l.message.clone())
        .filter(|m| m.starts_with("switchyard: policy swap:"))
        .collect()
}

#[test]
fn each_configured_change_is_logged_once_across_workers() {
    let example = common::example_policy();
    let killswitch = common::read_repo_file("testdata/policies/killswitch.json");

    let mut first = common::host();
    let mut second = common::host();
    second.share_data_with(&first);
    assert!(first.configure(example.as_bytes()).unwrap());
    assert!(second.configure(example.as_bytes()).unwrap());
    let lines = swap_lines(&first);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("switchyard: policy swap: none -> 2026-11-21.3, hash "));
    assert!(
        lines[0].ends_with("first policy: 2 flag(s), 2 consent record(s)"),
        "{}",
        lines[0]
    );
    assert!(
        swap_lines(&second).is_empty(),
        "the second worker saw the same policy"
    );

    // A push (ECDS) reaches both workers: one line, naming what changed.
    assert!(second.configure(killswitch.as_bytes()).unwrap());
    assert!(first.configure(killswitch.as_bytes()).unwrap());
    let lines = swap_lines(&second);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("2026-11-21.3 -> 2026-11-21.3-kill")
            && lines[0].contains("kill switch support_answer_model_route: ON (flag disabled)")
            && lines[0].contains("kill switch agent_tools: ON (flag disabled)"),
        "{}",
        lines[0]
    );
    assert_eq!(
        swap_lines(&first).len(),
        1,
        "only the first configure logged on this worker"
    );
}

/// A configuration that drops the consent source is compared with the records that were in
/// force (fetched), not with the previous configuration: the line says the opt-out went.
#[test]
fn a_configuration_is_compared_with_the_fetched_records_in_force() {
    let mut doc: serde_json::Value = serde_json::from_str(&common::example_policy()).unwrap();
    let without_source = serde_json::to_string_pretty(&doc).unwrap();
    doc["consent_source"] =
        serde_json::json!({"cluster": "policy_server", "path": "/consent.json"});
    let mut host = common::worker_with_cluster(&doc, "policy_server");
    host.advance_and_tick().unwrap();
    let token = host.pending_http_calls()[0].token;
    // The fetched records add acme's opt-out to the example's two.
    let mut tenants: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(&common::example_policy()).unwrap()["consent"]
            ["tenants"]
            .take();
    tenants["acme"] = serde_json::json!({"support_copilot":
        {"state": "opt_out", "actor": "a@acme.example", "at": "2026-11-23T00:00:00Z"}});
    let consent = serde_json::json!({ "tenants": tenants }).to_string();
    host.respond_http_call(token, 200, &[], consent.as_bytes())
        .unwrap();
    // ECDS pushes the policy without its consent source.
    let mut pushed = common::host();
    pushed.share_data_with(&host);
    assert!(pushed.configure(without_source.as_bytes()).unwrap());
    let lines = swap_lines(&pushed);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0]
            .ends_with("consent_source removed; consent records: 0 added, 1 removed, 0 changed"),
        "{}",
        lines[0]
    );
}
