//! The `switchyard` command as a user runs it: `check`'s exit codes and messages, and
//! `simulate`'s table, determinism, requests file, JSON output and exit codes; `compare`'s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo_file(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .unwrap()
}

/// A fresh directory for one test's files (remove it at the end).
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn simulate_prints_a_table_per_flag_rule_variation_and_reason() {
    let policy = repo_file("examples/support-copilot/policy.json");
    let out = switchyard(&["simulate", &policy, "--units", "3000"]);
    assert!(out.status.success(), "{out:?}");
    let table = stdout(&out);
    assert!(
        table.starts_with("policy 2026-11-21.3 (prod): 3000 synthetic requests, seed 1\n"),
        "{table}"
    );
    for needle in [
        "FLAG",
        "support_answer_model_route  (in scope)",
        "paid canary",
        "SPLIT",
        "CONSENT_DENIED",
        "reject 403",
        "agent_tools 403:",
        "routed:",
        "untouched (no flag in scope): 0",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in\n{table}");
    }
    // Same input, same table; another seed, another sample.
    let again = switchyard(&["simulate", &policy, "--units", "3000"]);
    assert_eq!(stdout(&again), table);
    let other = switchyard(&["simulate", &policy, "--units", "3000", "--seed", "2"]);
    assert!(other.status.success());
    assert_ne!(stdout(&other), table);
}

#[test]
fn simulate_defaults_to_ten_thousand_units_and_prints_json_on_request() {
    let policy = repo_file("examples/support-copilot/policy.json");
    let out = switchyard(&["simulate", &policy, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["requests"], 10_000);
    assert_eq!(report["seed"], 1);
    let flags = report["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 2);
    for f in flags {
        let sum: u64 = f["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["count"].as_u64().unwrap())
            .sum();
        assert_eq!(sum, f["in_scope"].as_u64().unwrap());
    }
}

#[test]
fn simulate_reads_a_requests_file_in_the_eval_format() {
    let dir = scratch_dir("switchyard-sim");
    let file = dir.join("requests.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"method": "POST", "path": "/v1/chat/completions", "headers": {"x-tenant-id": "acme"}}"#,
            "\n",
            r#"{"method": "POST", "path": "/v1/chat/completions", "headers": {"x-tenant-id": "globex"}}"#,
            "\n\n",
            r#"{"path": "/v1/agent/x", "headers": {"x-tenant-id": "acme", "x-user-id": "u1"}}"#,
            "\n",
            r#"{"path": "/healthz"}"#,
            "\n"
        ),
    )
    .unwrap();
    let policy = repo_file("examples/support-copilot/policy.json");
    let out = switchyard(&["simulate", &policy, "--requests", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let table = stdout(&out);
    assert!(
        table.starts_with("policy 2026-11-21.3 (prod): 4 requests\n"),
        "{table}"
    );
    let line = |needle: &str| {
        table
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("(override)"),
        "(override) candidate TARGETING_MATCH 1 50.00"
    );
    assert_eq!(
        line("fallback"),
        "(consent) fallback CONSENT_DENIED 1 50.00"
    );
    assert_eq!(
        line("reject 403"),
        "(consent) reject 403 CONSENT_DENIED 1 100.00"
    );
    assert!(
        table.contains("untouched (no flag in scope): 1 (25.00%)"),
        "{table}"
    );

    // A bad line is reported, the rest still counted, and the exit code says so.
    std::fs::write(&file, "{\"path\": \"/v1/agent\"}\nnot json\n").unwrap();
    let out = switchyard(&["simulate", &policy, "--requests", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(": 1 requests"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn simulate_refuses_bad_policies_and_bad_usage() {
    let dir = scratch_dir("switchyard-sim-bad");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"version": "1", "flags": [{"key": "f"}]}"#).unwrap();
    let out = switchyard(&["simulate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flags[0].variations: is required"));
    let policy = repo_file("examples/support-copilot/policy.json");
    // Each usage error says which argument is wrong before the usage text.
    for (args, says) in [
        (
            vec!["simulate", policy.as_str(), "--units"],
            "--units needs a whole number\n",
        ),
        (
            vec!["simulate", policy.as_str(), "--units", "many"],
            "--units needs a whole number, not \"many\"",
        ),
        (
            vec!["simulate", policy.as_str(), "--seed", "-1"],
            "--seed needs a whole number, not \"-1\"",
        ),
        (
            vec!["simulate", policy.as_str(), "--frobnicate"],
            "unknown option \"--frobnicate\" for simulate",
        ),
        (
            vec!["simulate", policy.as_str(), "--requests"],
            "--requests needs a file",
        ),
        (
            vec!["simulate", "--units", "5"],
            "simulate needs the POLICY file before its options",
        ),
        (
            vec![
                "simulate",
                policy.as_str(),
                "--units",
                "5",
                "--requests",
                // a file that exists: the options conflict, whatever the file
                policy.as_str(),
            ],
            "give one or the other",
        ),
    ] {
        let out = switchyard(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("switchyard: ") && err.contains(says),
            "{args:?}: {err}"
        );
        assert!(err.contains("usage:"), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A reader that stops early (`switchyard check P | head -1`) is not a crash: no panic
/// message, and the exit status is the command's own.
#[test]
fn a_closed_standard_output_is_not_a_crash() {
    use std::process::Stdio;
    let policy = repo_file("examples/support-copilot/policy.json");
    for args in [
        vec!["check", policy.as_str()],
        vec!["simulate", policy.as_str(), "--units", "100"],
        vec!["--help"],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // closed before the command writes anything
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
    // The same for standard error (`2>&1 | head -1` on a refused policy): the command's own
    // status, 1, not an abort.
    let dir = scratch_dir("switchyard-closed-stderr");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"version": "1", "flags": [{"key": "f"}, {"key": "g"}]}"#,
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", bad.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    assert_eq!(child.wait().unwrap().code(), Some(1));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_exits_0_for_a_valid_policy_and_1_for_anything_else() {
    let good = switchyard(&["check", &repo_file("examples/support-copilot/policy.json")]);
    assert_eq!(good.status.code(), Some(0));
    assert!(!stdout(&good).is_empty(), "a summary");

    let dir = scratch_dir("switchyard-check");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"version": "1", "flags": [], "flags": [], "extra": 1}"#,
    )
    .unwrap();
    let out = switchyard(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("flags: appears more than once")),
        "{stderr}"
    );
    assert!(stderr.lines().any(|l| l.starts_with("extra: ")), "{stderr}");

    // The contract: anything but a valid policy exits 1, an unreadable file included.
    let missing = dir.join("missing.json");
    let out = switchyard(&["check", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("cannot read"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_request_only_refuses_settings_that_need_the_response() {
    let example = repo_file("examples/support-copilot/policy.json");
    let out = switchyard(&["check", "--request-only", &example]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let places: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split_once(": needs the response").map(|(place, _)| place))
        .collect();
    assert_eq!(
        places,
        ["settings.exposure_event", "settings.upstream_metrics"],
        "{stderr}"
    );

    let mut lean: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&example).unwrap()).unwrap();
    lean["settings"] = serde_json::json!({"exposure_event": false, "upstream_metrics": false});
    let dir = scratch_dir("switchyard-check-request-only");
    let path = dir.join("lean.json");
    std::fs::write(&path, lean.to_string()).unwrap();
    let out = switchyard(&["check", "--request-only", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_answers_every_line_and_marks_the_bad_ones() {
    let dir = scratch_dir("switchyard-eval");
    let requests = dir.join("requests.jsonl");
    std::fs::write(
        &requests,
        concat!(
            r#"{"method": "POST", "path": "/v1/agent", "headers": {"x-tenant-id": "acme"}}"#,
            "\n",
            "not json\n",
            r#"{"path": "/healthz"}"#,
            "\n"
        ),
    )
    .unwrap();
    // A line that is not UTF-8 is a bad line too, and the run goes on past it.
    let mut bytes = std::fs::read(&requests).unwrap();
    bytes.extend_from_slice(b"{\"path\": \"/\xff\"}\n{\"path\": \"/healthz\"}\n");
    std::fs::write(&requests, bytes).unwrap();
    let policy = repo_file("examples/support-copilot/policy.json");
    let out = switchyard(&["eval", &policy, requests.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad line makes the exit code 1"
    );
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "one line out per line in");
    assert_eq!(
        lines[0]["reject"]["status"], 403,
        "acme has no agent opt-in"
    );
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].as_str().unwrap().starts_with("line 2: "));
    assert_eq!(lines[2]["decisions"], serde_json::json!([]));
    assert_eq!(lines[3]["line"], 4);
    assert!(lines[3]["error"].as_str().unwrap().contains("UTF-8"));
    assert_eq!(lines[4]["decisions"], serde_json::json!([]));
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs the command, killing it if it has not ended within `limit`; its exit code, or `None`
/// when it had to be killed.
fn exit_code_within(args: &[&str], limit: std::time::Duration) -> Option<i32> {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().ok();
    None
}

/// A directory opens as a file on Linux and then fails every read: each command that reads
/// requests stops with exit code 2 instead of reporting the same error for ever.
#[test]
fn a_directory_given_as_requests_ends_with_exit_2() {
    let policy = repo_file("examples/support-copilot/policy.json");
    let dir = scratch_dir("switchyard-requests-dir");
    let dir_path = dir.to_str().unwrap();
    for args in [
        vec!["eval", &policy, dir_path],
        vec!["simulate", &policy, "--requests", dir_path],
        vec!["compare", &policy, &policy, "--requests", dir_path],
    ] {
        let code = exit_code_within(&args, std::time::Duration::from_secs(10));
        assert_eq!(code, Some(2), "{args:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `compare` as a config author runs it before a push: a reordered split is warned about, a
/// raised canary is not; a sample of real requests works as for `simulate`; usage errors and
/// refused policies exit as the other commands do.
#[test]
fn compare_shows_what_a_change_moves_and_warns_of_flips() {
    let dir = scratch_dir("switchyard-compare");
    let old = repo_file("examples/support-copilot/policy.json");
    let example: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&old).unwrap()).unwrap();
    let write = |name: &str, split: serde_json::Value| {
        let mut p = example.clone();
        p["flags"][0]["rules"][2]["split"] = split;
        let path = dir.join(name);
        std::fs::write(&path, p.to_string()).unwrap();
        path.to_string_lossy().into_owned()
    };
    let reordered = write(
        "reordered.json",
        serde_json::json!([{"variation": "control", "weight": 95}, {"variation": "candidate", "weight": 5}]),
    );
    let raised = write(
        "raised.json",
        serde_json::json!([{"variation": "candidate", "weight": 20}, {"variation": "control", "weight": 80}]),
    );
    let out = switchyard(&["compare", &old, &reordered, "--units", "4000"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let table = stdout(&out);
    assert!(
        table.starts_with("policy 2026-11-21.3 -> 2026-11-21.3: 4000 requests compared\n"),
        "{table}"
    );
    assert!(table.contains("  candidate -> control: "), "{table}");
    assert!(table.contains("  control -> candidate: "), "{table}");
    assert!(
        table.contains("WARNING: requests move both ways between candidate and control"),
        "{table}"
    );
    assert_eq!(
        table,
        stdout(&switchyard(&[
            "compare", &old, &reordered, "--units", "4000"
        ])),
        "deterministic"
    );

    let out = switchyard(&["compare", &old, &raised, "--units", "4000", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let flag = &json["flags"][0];
    assert_eq!(flag["flag"], "support_answer_model_route");
    assert_eq!(flag["both_ways"], serde_json::json!([]));
    let moves = flag["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(
        (moves[0]["from"].as_str(), moves[0]["to"].as_str()),
        (Some("control"), Some("candidate"))
    );
    assert!(moves[0]["count"].as_u64().unwrap() > 0);

    // Real requests: the same paid conversation, in a 5% canary before and 20% after or not.
    let file = dir.join("requests.jsonl");
    let lines: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"method": "POST", "path": "/v1/chat/completions", "headers": {{"x-tenant-id": "hooli", "x-plan": "pro", "x-conversation-id": "c{i}"}}}}"#))
        .chain(["not json".to_string()])
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = switchyard(&[
        "compare",
        &old,
        &raised,
        "--requests",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "a bad line: {out:?}");
    let table = stdout(&out);
    assert!(table.contains(": 200 requests compared"), "{table}");
    assert!(table.contains("control -> candidate"), "{table}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 201"));

    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"version": "1", "flags": [{"key": "f"}]}"#).unwrap();
    let out = switchyard(&["compare", &old, bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flags[0].variations: is required"));
    for (args, says) in [
        (vec!["compare", old.as_str()], "usage:"),
        (
            vec!["compare", old.as_str(), "--units", "5"],
            "compare needs the OLD and NEW files",
        ),
        (
            vec!["compare", old.as_str(), old.as_str(), "--frob"],
            "unknown option \"--frob\" for compare",
        ),
    ] {
        let out = switchyard(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
