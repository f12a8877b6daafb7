//! Remote policy sources (`source`, `consent_source`): fetched on the tick with
//! `proxy_http_call`, checked whole, swapped in; one fetch per interval for all workers through
//! a lease in shared data; the fetched document reaches the other workers through shared data.

use serde_json::{json, Value};
use switchyard_host_tests::{FakeHost, LogLevel};

use crate::common;

const CLUSTER: &str = "policy_server";
const ROUTE: &str = "x-switchyard-cluster";

fn example() -> Value {
    serde_json::from_str(&common::example_policy()).unwrap()
}

/// The example policy fetching itself from `policy_server` every second, served as written
/// until the first document arrives: these tests are about fetching. What the default
/// (`until_fetched` safe) serves before it is tested in `until_the_first_document_*`.
fn bootstrap() -> Value {
    let mut doc = example();
    doc["source"] = json!({"cluster": CLUSTER, "path": "/policy.json", "interval_ms": 1000,
                           "timeout_ms": 500, "until_fetched": "bootstrap"});
    doc
}

/// `doc` with a new version and the support flag's kill switch off.
fn killed(doc: &Value, version: &str) -> String {
    let mut doc = doc.clone();
    doc["version"] = json!(version);
    doc["flags"][0]["enabled"] = json!(false);
    serde_json::to_string_pretty(&doc).unwrap()
}

fn worker(policy: &Value) -> FakeHost {
    common::worker_with_cluster(policy, CLUSTER)
}

/// The cluster the example's support route picks for tenant acme (override → candidate,
/// support_model_b; the kill switch makes it control, support_model_a).
fn acme_cluster(host: &mut FakeHost) -> String {
    route(host, "acme")
}

fn route(host: &mut FakeHost, tenant: &str) -> String {
    served(host, tenant).0
}

/// The policy version and content hash in the exposure event of a chat request by `tenant`.
fn event_version_and_hash(host: &mut FakeHost, tenant: &str) -> (String, String) {
    let result = host.request(&common::chat(tenant, "conv-1")).unwrap();
    let event: serde_json::Value =
        serde_json::from_str(&result.filter_state_str("wasm.switchyard_event").unwrap()).unwrap();
    let text = |key: &str| event[key].as_str().unwrap_or_default().to_string();
    (text("feature_flag.version"), text("switchyard.policy.hash"))
}

/// Info lines with this prefix, leaving out the configure-time audit line (`none -> ...`, see
/// `audit.rs`): these tests are about swaps of fetched documents.
fn info_lines(host: &FakeHost, prefix: &str) -> Vec<String> {
    host.logs()
        .iter()
        .filter(|l| l.level == LogLevel::Info && l.message.starts_with(prefix))
        .filter(|l| !l.message.starts_with("switchyard: policy swap: none -> "))
        .map(|l| l.message.clone())
        .collect()
}

fn warnings(host: &FakeHost) -> Vec<String> {
    common::messages_at(host, LogLevel::Warn)
}

#[test]
fn fetch_swaps_the_policy_and_logs_the_audit_line() {
    let mut host = worker(&bootstrap());
    assert_eq!(
        host.state().tick_period_ms,
        250,
        "a quarter of the interval"
    );
    assert_eq!(acme_cluster(&mut host), "support_model_b");

    let token = common::tick_until_call(&mut host, 1).expect("first tick fetches");
    let call = host.pending_http_calls()[0].clone();
    assert_eq!(call.cluster, CLUSTER);
    assert_eq!(call.header(":method").as_deref(), Some("GET"));
    assert_eq!(call.header(":path").as_deref(), Some("/policy.json"));
    assert_eq!(call.header(":authority").as_deref(), Some(CLUSTER));
    assert_eq!(call.header("if-none-match"), None);
    assert_eq!(call.timeout_ms, 500);

    let served = killed(&bootstrap(), "v2");
    host.respond_http_call(token, 200, &[("etag", "\"v2\"")], served.as_bytes())
        .unwrap();
    assert_eq!(
        acme_cluster(&mut host),
        "support_model_a",
        "kill switch applies"
    );

    let old =
        switchyard_policy::load(&serde_json::to_string_pretty(&bootstrap()).unwrap()).unwrap();
    let new = switchyard_policy::load(&served).unwrap();
    let expected = format!(
        "switchyard: policy swap: 2026-11-21.3 -> v2, hash {}, {}",
        switchyard_policy::content_hash(&served),
        switchyard_policy::summarize_change(Some(&old), &new)
    );
    assert_eq!(
        info_lines(&host, "switchyard: policy swap:"),
        vec![expected]
    );
    assert_eq!(host.metric("switchyard.policy.swaps"), Some(1));
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(0));
    assert_eq!(host.metric("switchyard.policy.age_seconds"), Some(0));

    // The age gauge counts from the swap.
    host.advance_ms(4_750);
    host.advance_and_tick().unwrap();
    assert_eq!(host.metric("switchyard.policy.age_seconds"), Some(5));
}

#[test]
fn not_modified_keeps_the_policy_and_etag_is_sent() {
    let mut host = worker(&bootstrap());
    let token = common::tick_until_call(&mut host, 1).unwrap();
    let served = killed(&bootstrap(), "v2");
    host.respond_http_call(token, 200, &[("etag", "\"v2\"")], served.as_bytes())
        .unwrap();

    // Nothing until the interval has passed; then one call with If-None-Match.
    assert!(
        common::tick_until_call(&mut host, 3).is_none(),
        "no fetch within the interval"
    );
    let token = common::tick_until_call(&mut host, 2).expect("a fetch after the interval");
    assert_eq!(
        host.pending_http_calls()[0]
            .header("if-none-match")
            .as_deref(),
        Some("\"v2\"")
    );
    host.respond_http_call(token, 304, &[], b"").unwrap();
    assert_eq!(acme_cluster(&mut host), "support_model_a");
    assert_eq!(host.metric("switchyard.policy.swaps"), Some(1));
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(0));
    assert_eq!(info_lines(&host, "switchyard: policy swap:").len(), 1);
}

#[test]
fn bad_fetches_keep_the_last_good_policy_and_are_counted() {
    let mut host = worker(&bootstrap());
    let token = common::tick_until_call(&mut host, 1).unwrap();
    let good = killed(&bootstrap(), "v2");
    host.respond_http_call(token, 200, &[("etag", "\"v2\"")], good.as_bytes())
        .unwrap();
    assert_eq!(acme_cluster(&mut host), "support_model_a");

    // An invalid document (typo'd split variation): refused, logged with its place, counted.
    let mut bad = serde_json::from_str::<Value>(&good).unwrap();
    bad["version"] = json!("v3-bad");
    bad["flags"][0]["enabled"] = json!(true);
    bad["flags"][0]["rules"][2]["split"][0]["variation"] = json!("canddate");
    let token = common::tick_until_call(&mut host, 8).unwrap();
    host.respond_http_call(
        token,
        200,
        &[("etag", "\"v3\"")],
        bad.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        acme_cluster(&mut host),
        "support_model_a",
        "v2 still serves"
    );
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(1));
    let warned = warnings(&host);
    assert!(
        warned.iter().any(|w| w.contains("refused")
            && w.contains("flags[0].rules[2].split")
            && w.contains("canddate")
            && w.contains("keeping policy v2")),
        "{warned:#?}"
    );
    // The next fetch asks about the refused document by its ETag (a server still serving it
    // answers 304 instead of sending it again; `a_refused_document_is_asked_about_by_its_etag`).
    let token = common::tick_until_call(&mut host, 8).unwrap();
    assert_eq!(
        host.pending_http_calls()[0]
            .header("if-none-match")
            .as_deref(),
        Some("\"v3\"")
    );

    // A server error, a reset, not JSON, an empty body: all kept.
    host.respond_http_call(token, 503, &[], b"unavailable")
        .unwrap();
    let token = common::tick_until_call(&mut host, 8).unwrap();
    host.fail_http_call(token).unwrap();
    let token = common::tick_until_call(&mut host, 8).unwrap();
    host.respond_http_call(token, 200, &[], b"{not json")
        .unwrap();
    let token = common::tick_until_call(&mut host, 8).unwrap();
    host.respond_http_call(token, 200, &[], b"").unwrap();
    assert_eq!(acme_cluster(&mut host), "support_model_a");
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(5));
    assert_eq!(host.metric("switchyard.policy.swaps"), Some(1));
    let warned = warnings(&host);
    assert!(
        warned.iter().any(|w| w.contains("status 503")),
        "{warned:#?}"
    );
    assert!(
        warned.iter().any(|w| w.contains("no response")),
        "{warned:#?}"
    );
    assert!(
        warned.iter().any(|w| w.contains("not valid JSON")),
        "{warned:#?}"
    );
    assert!(host.broken().is_none());
}

/// A source that keeps serving a broken document costs a download each interval, not a check:
/// the worker remembers the refused documents by content and refuses them again with the same
/// reasons, still counted and logged once per interval.
#[test]
fn a_refused_document_served_again_is_not_checked_again() {
    let mut host = worker(&bootstrap());
    let mut bad = bootstrap();
    bad["version"] = json!("v2-bad");
    bad["flags"][0]["rules"][2]["split"][0]["variation"] = json!("canddate");
    let bad = bad.to_string();
    let mut other_bad = bootstrap();
    other_bad["version"] = json!("v3-bad");
    other_bad["flags"][1]["off_variation"] = json!("of");
    let other_bad = other_bad.to_string();
    let marker = "(the same documents as refused before, not checked again)";
    let refusals = |host: &FakeHost| -> Vec<String> {
        warnings(host)
            .into_iter()
            .filter(|w| w.contains("refused"))
            .collect()
    };
    for (round, body) in [&bad, &bad, &bad, &other_bad, &bad].into_iter().enumerate() {
        let token = common::tick_until_call(&mut host, 8).unwrap();
        host.respond_http_call(token, 200, &[], body.as_bytes())
            .unwrap();
        assert_eq!(
            host.metric("switchyard.policy.fetch_failures"),
            Some(round as i64 + 1),
            "each interval counts"
        );
        let last = refusals(&host).pop().unwrap();
        let again = round == 1 || round == 2 || round == 4;
        assert_eq!(
            last.ends_with(&format!("{marker}; keeping policy 2026-11-21.3")),
            again,
            "{last}"
        );
        let why = if body == &bad {
            "variation \"canddate\" is not defined"
        } else {
            "variation \"of\" is not defined"
        };
        assert!(last.contains(why), "the reasons are repeated: {last}");
    }
    assert_eq!(
        acme_cluster(&mut host),
        "support_model_b",
        "the bootstrap serves"
    );
    // The fixed document is checked and served.
    let token = common::tick_until_call(&mut host, 8).unwrap();
    host.respond_http_call(token, 200, &[], killed(&bootstrap(), "v4").as_bytes())
        .unwrap();
    assert_eq!(acme_cluster(&mut host), "support_model_a");
    assert_eq!(host.metric("switchyard.policy.swaps"), Some(1));
}

/// A server still serving a refused document answers the fetcher's `If-None-Match` for it with
/// a 304 instead of sending it again every interval; the refusal is still counted and logged
/// each interval, and the fixed document is fetched as soon as it changes.
#[test]
fn a_refused_document_is_asked_about_by_its_etag() {
    let mut host = worker(&bootstrap());
    let mut bad = bootstrap();
    bad["version"] = json!("v2-bad");
    bad["flags"][0]["off_variation"] = json!("of");
    let token = common::tick_until_call(&mut host, 8).unwrap();
    host.respond_http_call(
        token,
        200,
        &[("etag", "\"bad\"")],
        bad.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(1));
    for round in 2..=3 {
        let token = common::tick_until_call(&mut host, 8).unwrap();
        assert_eq!(
            host.pending_http_calls()[0]
                .header("if-none-match")
                .as_deref(),
            Some("\"bad\""),
            "asks about the refused document"
        );
        host.respond_http_call(token, 304, &[], b"").unwrap();
        assert_eq!(
            host.metric("switchyard.policy.fetch_failures"),
            Some(round),
            "still refused, still counted"
        );
        let last = warnings(&host).pop().unwrap();
        assert!(
            last.contains("variation \"of\" is not defined")
                && last.contains("(the same documents as refused before, not checked again)"),
            "{last}"
        );
        assert_eq!(
            acme_cluster(&mut host),
            "support_model_b",
            "the bootstrap serves"
        );
    }
    let token = common::tick_until_call(&mut host, 8).unwrap();
    host.respond_http_call(
        token,
        200,
        &[("etag", "\"v4\"")],
        killed(&bootstrap(), "v4").as_bytes(),
    )
    .unwrap();
    assert_eq!(acme_cluster(&mut host), "support_model_a");
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(3));
    let token = common::tick_until_call(&mut host, 8).unwrap();
    assert_eq!(
        host.pending_http_calls()[0]
            .header("if-none-match")
            .as_deref(),
        Some("\"v4\""),
        "then about the live one"
    );
    host.respond_http_call(token, 304, &[], b"").unwrap();
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(3));
    assert_eq!(host.metric("switchyard.policy.swaps"), Some(1));
}

#[test]
fn a_fetched_policy_for_another_environment_is_refused() {
    let mut host = common::host();
    host.add_cluster(CLUSTER);
    host.set_node_metadata("switchyard_environment", "prod");
    let text = serde_json::to_string_pretty(&bootstrap()).unwrap();
    assert!(host.configure(text.as_bytes()).unwrap());
    let token = common::tick_until_call(&mut host, 1).unwrap();
    let mut staging = serde_json::from_str::<Value>(&killed(&bootstrap(), "v2")).unwrap();
    staging["environment"] = json!("staging");
    host.respond_http_call(token, 200, &[], staging.to_string().as_bytes())
        .unwrap();
    assert_eq!(acme_cluster(&mut host), "support_model_b");
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(1));
    let warned = warnings(&host);
    assert!(
        warned.iter().any(|w| w.contains(
            "environment: this policy is for environment \"staging\", but this proxy declares environment \"prod\""
        )),
        "{warned:#?}"
    );
}

#[test]
fn node_metadata_guards_the_bootstrap_policy() {
    let text = common::example_policy();
    // The example is for prod: a staging proxy refuses it at configure time.
    let mut host = common::host();
    host.set_node_metadata("switchyard_environment", "staging");
    assert!(!host.configure(text.as_bytes()).unwrap());
    assert!(
        host.logs().iter().any(|l| l.level == LogLevel::Error
            && l.message.starts_with(
                "switchyard: policy rejected: environment: this policy is for environment \"prod\""
            )),
        "{:#?}",
        host.logs()
    );
    assert_eq!(host.metric("switchyard.policy.load_failures"), Some(1));

    let mut host = common::host();
    host.set_node_metadata("switchyard_environment", "prod");
    host.set_node_metadata(
        "switchyard_pseudonym_key",
        "000102030405060708090a0b0c0d0e0f",
    );
    assert!(
        host.configure(text.as_bytes()).unwrap(),
        "{:#?}",
        host.logs()
    );

    // Older Envoys answered the node under `node` rather than `xds.node`: read there too.
    let mut host = common::host();
    host.state_mut().properties.insert(
        ["node", "metadata", "switchyard_environment"]
            .map(String::from)
            .to_vec(),
        b"staging".to_vec(),
    );
    assert!(!host.configure(text.as_bytes()).unwrap());

    let mut host = common::host();
    host.set_node_metadata("switchyard_pseudonym_key", "not-hex");
    assert!(!host.configure(text.as_bytes()).unwrap());
    assert!(host.logs().iter().any(|l| l.message
        == "switchyard: policy rejected: node.metadata.switchyard_pseudonym_key: must be 32 hexadecimal digits (a 128-bit key)"),
        "{:#?}", host.logs());
}

#[test]
fn one_worker_fetches_per_interval_and_the_other_reads_shared_data() {
    let mut a = common::host();
    let mut b = common::host();
    b.share_data_with(&a);
    for host in [&mut a, &mut b] {
        host.add_cluster(CLUSTER);
        let text = serde_json::to_string_pretty(&bootstrap()).unwrap();
        assert!(host.configure(text.as_bytes()).unwrap());
    }
    assert!(a.state().shared_data.same_as(&b.state().shared_data));

    // Tick both workers (same clock) through four intervals: one fetch per interval in all.
    let mut calls = Vec::new();
    let mut swapped_at = None;
    let served = killed(&bootstrap(), "v2");
    for step in 0..16 {
        // Both hosts start at the same fixed time and advance together.
        for (name, host) in [("a", &mut a), ("b", &mut b)] {
            host.advance_ms(250);
            host.tick().unwrap();
            if let Some(call) = host.pending_http_calls().first().cloned() {
                calls.push((step, name));
                if swapped_at.is_none() {
                    host.respond_http_call(
                        call.token,
                        200,
                        &[("etag", "\"v2\"")],
                        served.as_bytes(),
                    )
                    .unwrap();
                    swapped_at = Some(name);
                } else {
                    host.respond_http_call(call.token, 304, &[], b"").unwrap();
                }
            }
        }
    }
    // One call per second of fake time: 16 steps of 250 ms = 4 s.
    assert_eq!(calls.len(), 4, "{calls:?}");
    let (fetcher, other) = if swapped_at == Some("a") {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert_eq!(acme_cluster(fetcher), "support_model_a");
    assert_eq!(
        acme_cluster(other),
        "support_model_a",
        "picked up from shared data"
    );
    // One audit line (by the fetcher) and one swap counted; the other adopted quietly.
    assert_eq!(info_lines(fetcher, "switchyard: policy swap:").len(), 1);
    assert_eq!(info_lines(other, "switchyard: policy swap:").len(), 0);
    assert!(other.logs().iter().any(|l| l.level == LogLevel::Debug
        && l.message
            .starts_with("switchyard: policy swap: 2026-11-21.3 -> v2")
        && l.message.ends_with("(fetched by another worker)")));
    assert_eq!(fetcher.metric("switchyard.policy.swaps"), Some(1));
    assert_eq!(other.metric("switchyard.policy.swaps"), Some(0));
    // The shared document and the lease are where the README says.
    let keys = fetcher.state().shared_data.keys();
    assert!(
        keys.contains(&"switchyard.policy.policy_server:policy_server/policy.json".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(
            &"switchyard.lease.policy.policy_server:policy_server/policy.json".to_string()
        ),
        "{keys:?}"
    );
}

#[test]
fn a_new_worker_serves_the_shared_document_from_its_configuration() {
    let mut a = worker(&bootstrap());
    let token = common::tick_until_call(&mut a, 1).unwrap();
    let served = killed(&bootstrap(), "v2");
    a.respond_http_call(token, 200, &[("etag", "\"v2\"")], served.as_bytes())
        .unwrap();

    let mut b = common::host();
    b.share_data_with(&a);
    b.add_cluster(CLUSTER);
    let now = a.state().time_nanos;
    b.state_mut().time_nanos = now;
    let text = serde_json::to_string_pretty(&bootstrap()).unwrap();
    assert!(b.configure(text.as_bytes()).unwrap());
    assert_eq!(
        acme_cluster(&mut b),
        "support_model_a",
        "the fetched policy, not the bootstrap, from the first request"
    );
    b.advance_and_tick().unwrap();
    assert_eq!(acme_cluster(&mut b), "support_model_a");
    assert!(b.pending_http_calls().is_empty(), "a holds the lease");
}

#[test]
fn consent_source_replaces_the_tenant_records() {
    let mut doc = bootstrap();
    doc["consent_source"] = json!({"cluster": CLUSTER, "path": "/consent.json", "interval_ms": 500,
               "until_fetched": "bootstrap"});
    let mut host = worker(&doc);
    assert_eq!(
        host.state().tick_period_ms,
        125,
        "a quarter of the shortest interval"
    );
    // Bootstrap: globex opted out of support_copilot (fallback), acme allowed (candidate).
    assert_eq!(route(&mut host, "globex"), "support_rules");
    assert_eq!(route(&mut host, "acme"), "support_model_b");
    let (_, bootstrap_hash) = event_version_and_hash(&mut host, "acme");
    assert_eq!(
        bootstrap_hash,
        switchyard_policy::content_hash(&serde_json::to_string_pretty(&doc).unwrap())
    );

    // Both sources are fetched; answer the policy with 304-equivalent "nothing yet" (a 404
    // counts as a failure, the bootstrap stays) and the consent with new records.
    host.advance_and_tick().unwrap();
    let calls = host.pending_http_calls().to_vec();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let consent_call = calls
        .iter()
        .find(|c| c.header(":path").as_deref() == Some("/consent.json"))
        .unwrap();
    let policy_call = calls
        .iter()
        .find(|c| c.header(":path").as_deref() == Some("/policy.json"))
        .unwrap();
    host.respond_http_call(policy_call.token, 404, &[], b"")
        .unwrap();
    let consent = json!({"tenants": {
        "acme": {"support_copilot": {"state": "opt_out", "actor": "admin@acme.example", "at": "2026-11-22T10:00:00Z"}}
    }});
    host.respond_http_call(
        consent_call.token,
        200,
        &[("etag", "\"c1\"")],
        consent.to_string().as_bytes(),
    )
    .unwrap();
    // acme's new opt-out applies; globex's record was replaced (no record: opt_out mode allows).
    assert_eq!(route(&mut host, "acme"), "support_rules");
    assert_eq!(route(&mut host, "globex"), "support_model_a");
    let swaps = info_lines(&host, "switchyard: policy swap:");
    assert_eq!(swaps.len(), 1, "{swaps:#?}");
    let prefix = "switchyard: policy swap: 2026-11-21.3 -> 2026-11-21.3, hash ";
    assert!(swaps[0].starts_with(prefix), "{}", swaps[0]);
    // The version is the same, so only the hash ties acme's events to the records in force:
    // the one the swap line names, not the bootstrap's.
    let swap_hash = &swaps[0][prefix.len()..prefix.len() + 32];
    let (version, hash) = event_version_and_hash(&mut host, "acme");
    assert_eq!(version, "2026-11-21.3");
    assert_eq!(hash, swap_hash);
    assert_ne!(hash, bootstrap_hash);
    assert!(
        swaps[0].contains("consent records: 1 added, 2 removed"),
        "the summary counts the consent changes: {}",
        swaps[0]
    );

    // The consent interval is its own: 500 ms later only the consent is fetched again.
    for _ in 0..4 {
        host.advance_and_tick().unwrap();
    }
    let paths: Vec<String> = host
        .pending_http_calls()
        .iter()
        .filter_map(|c| c.header(":path"))
        .collect();
    assert_eq!(paths, vec!["/consent.json".to_string()]);
    let token = host.pending_http_calls()[0].token;
    assert_eq!(
        host.pending_http_calls()[0]
            .header("if-none-match")
            .as_deref(),
        Some("\"c1\"")
    );
    // A consent document with a bad record is refused whole.
    let bad = json!({"tenants": {"acme": {"support_copilot": {"state": "maybe"}}}});
    host.respond_http_call(token, 200, &[], bad.to_string().as_bytes())
        .unwrap();
    assert_eq!(route(&mut host, "acme"), "support_rules");
    assert!(
        warnings(&host)
            .iter()
            .any(|w| w.contains("consent.tenants.acme.support_copilot")),
        "{:#?}",
        warnings(&host)
    );

    // A fetched policy keeps the fetched consent records.
    for _ in 0..4 {
        host.advance_and_tick().unwrap();
    }
    let policy_call = host
        .pending_http_calls()
        .iter()
        .find(|c| c.header(":path").as_deref() == Some("/policy.json"))
        .cloned()
        .expect("policy fetched again after its interval");
    let served = killed(&bootstrap(), "v2");
    host.respond_http_call(policy_call.token, 200, &[], served.as_bytes())
        .unwrap();
    assert_eq!(
        route(&mut host, "acme"),
        "support_rules",
        "consent first, even with the kill switch"
    );
    assert_eq!(
        route(&mut host, "initech"),
        "support_model_a",
        "kill switch"
    );
}

#[test]
fn an_unknown_cluster_is_a_counted_failure_not_a_crash() {
    let mut host = common::host();
    let text = serde_json::to_string_pretty(&bootstrap()).unwrap();
    assert!(host.configure(text.as_bytes()).unwrap());
    for _ in 0..4 {
        host.advance_and_tick().unwrap();
    }
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(1));
    assert!(warnings(&host)
        .iter()
        .any(|w| w.contains("is there a cluster named \"policy_server\"")));
    assert!(host.broken().is_none());
    assert_eq!(acme_cluster(&mut host), "support_model_b");
}

/// The bootstrap with both sources, each polled every `consent_ms` / 1 s.
fn both_sources(consent_ms: u32) -> Value {
    let mut doc = bootstrap();
    doc["consent_source"] = json!({"cluster": CLUSTER, "path": "/consent.json",
                                   "interval_ms": consent_ms, "timeout_ms": 400,
                                   "until_fetched": "bootstrap"});
    doc
}

/// A consent document: each tenant's state for one class.
fn consent_doc(class: &str, records: &[(&str, &str)]) -> String {
    let mut tenants = serde_json::Map::new();
    for (tenant, state) in records {
        tenants.insert(
            tenant.to_string(),
            json!({class: {"state": state, "actor": "ops@example", "at": "2026-11-23T00:00:00Z"}}),
        );
    }
    json!({ "tenants": tenants }).to_string()
}

/// The tokens of the calls in flight to `/policy.json` and `/consent.json`.
fn call_tokens(host: &FakeHost) -> (Option<u32>, Option<u32>) {
    let token = |path: &str| {
        host.pending_http_calls()
            .iter()
            .find(|c| c.header(":path").as_deref() == Some(path))
            .map(|c| c.token)
    };
    (token("/policy.json"), token("/consent.json"))
}

/// `doc` as version `version` with its consent class `support_copilot` renamed to `to`.
fn class_renamed(doc: &Value, version: &str, to: &str) -> String {
    let mut doc = doc.clone();
    doc["version"] = json!(version);
    let classes = doc["consent"]["classes"].as_object_mut().unwrap();
    let class = classes.remove("support_copilot").unwrap();
    classes.insert(to.to_string(), class);
    doc["flags"][0]["feature_class"] = json!(to);
    doc["consent"]["tenants"] = json!({});
    serde_json::to_string_pretty(&doc).unwrap()
}

#[test]
fn a_policy_and_the_consent_records_it_needs_apply_together() {
    let mut host = worker(&both_sources(1000));
    host.advance_and_tick().unwrap();
    let (Some(p), Some(c)) = call_tokens(&host) else {
        panic!("both sources fetched: {:?}", host.pending_http_calls());
    };
    host.respond_http_call(p, 404, &[], b"").unwrap();
    let c1 = consent_doc("support_copilot", &[("acme", "opt_out")]);
    host.respond_http_call(c, 200, &[], c1.as_bytes()).unwrap();
    assert_eq!(route(&mut host, "acme"), "support_rules", "acme opted out");

    // The next policy renames the class, and the consent records move with it: each alone is
    // refused against the other's live document, the two together are a valid pair.
    for _ in 0..4 {
        host.advance_and_tick().unwrap();
    }
    let (Some(p), Some(c)) = call_tokens(&host) else {
        panic!(
            "both sources fetched again: {:?}",
            host.pending_http_calls()
        );
    };
    let failures = host.metric("switchyard.policy.fetch_failures").unwrap();
    let p2 = class_renamed(&bootstrap(), "v2", "support_assistant");
    host.respond_http_call(p, 200, &[], p2.as_bytes()).unwrap();
    assert_eq!(
        host.metric("switchyard.policy.fetch_failures"),
        Some(failures + 1),
        "v2 alone does not fit the live consent records"
    );
    assert_eq!(route(&mut host, "acme"), "support_rules");
    let c2 = consent_doc("support_assistant", &[("acme", "opt_out")]);
    host.respond_http_call(c, 200, &[], c2.as_bytes()).unwrap();
    let swaps = info_lines(&host, "switchyard: policy swap:");
    assert!(
        swaps.last().is_some_and(|l| l.contains("-> v2,")),
        "the pair applies once its second half arrives: {swaps:#?}"
    );
    assert_eq!(route(&mut host, "acme"), "support_rules", "still opted out");
    assert_eq!(
        route(&mut host, "globex"),
        "support_model_a",
        "no record now"
    );
    assert_eq!(
        host.metric("switchyard.policy.fetch_failures"),
        Some(failures + 1)
    );
}

#[test]
fn workers_never_publish_a_pair_the_engine_refuses() {
    // a fetches the policy; while that fetch is out, b fetches consent records that the
    // policy a is about to get cannot take. a must decide against b's records, not its own
    // stale view: every worker then serves the same pair.
    let mut a = common::host();
    let mut b = common::host();
    b.share_data_with(&a);
    let text = serde_json::to_string_pretty(&both_sources(500)).unwrap();
    for host in [&mut a, &mut b] {
        host.add_cluster(CLUSTER);
        assert!(host.configure(text.as_bytes()).unwrap());
    }
    a.advance_and_tick().unwrap();
    b.state_mut().time_nanos = a.state().time_nanos;
    let (Some(p), Some(c)) = call_tokens(&a) else {
        panic!("a holds both leases: {:?}", a.pending_http_calls());
    };
    a.respond_http_call(c, 404, &[], b"").unwrap();
    // Half a second later the consent lease is free again; b takes it.
    let mut b_call = None;
    for _ in 0..4 {
        b.advance_and_tick().unwrap();
        b_call = call_tokens(&b).1;
        if b_call.is_some() {
            break;
        }
    }
    let b_call = b_call.expect("b fetches the consent records");
    let c2 = consent_doc("support_copilot", &[("acme", "opt_out")]);
    b.respond_http_call(b_call, 200, &[], c2.as_bytes())
        .unwrap();
    assert_eq!(route(&mut b, "acme"), "support_rules");

    // The policy a fetched drops the class support_copilot (and the gate that used it).
    let mut p2 = bootstrap();
    p2["version"] = json!("v2");
    p2["consent"]["classes"]
        .as_object_mut()
        .unwrap()
        .remove("support_copilot");
    p2["consent"]["tenants"] = json!({});
    let flag = p2["flags"][0].as_object_mut().unwrap();
    flag.remove("feature_class");
    flag.remove("on_consent_denied");
    let p2 = serde_json::to_string_pretty(&p2).unwrap();
    let failures = a.metric("switchyard.policy.fetch_failures").unwrap();
    a.respond_http_call(p, 200, &[], p2.as_bytes()).unwrap();
    assert_eq!(
        a.metric("switchyard.policy.fetch_failures"),
        Some(failures + 1),
        "v2 cannot take the live consent records: refused and counted"
    );
    for _ in 0..2 {
        for host in [&mut a, &mut b] {
            host.advance_ms(250);
            host.tick().unwrap();
        }
    }
    for host in [&mut a, &mut b] {
        assert_eq!(
            route(host, "acme"),
            "support_rules",
            "the same pair everywhere"
        );
    }
}

#[test]
fn a_body_beyond_the_document_limit_is_refused_unread() {
    let mut host = worker(&bootstrap());
    let token = common::tick_until_call(&mut host, 1).unwrap();
    let limit = switchyard_policy::limits::MAX_DOCUMENT_BYTES;
    let body = vec![b' '; limit + 1];
    host.respond_http_call(token, 200, &[], &body).unwrap();
    assert!(host.broken().is_none());
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(1));
    let why = format!("the body is {} bytes; the limit is {limit}", limit + 1);
    assert!(
        warnings(&host).iter().any(|w| w.contains(&why)),
        "{:#?}",
        warnings(&host)
    );
    assert_eq!(acme_cluster(&mut host), "support_model_b", "bootstrap kept");
}

#[test]
fn a_new_configuration_must_fit_the_live_consent_records() {
    // Consent records come from a source; the policy is the configuration (pushed by ECDS).
    let mut doc = example();
    doc["consent_source"] = json!({"cluster": CLUSTER, "path": "/consent.json", "interval_ms": 1000,
               "until_fetched": "bootstrap"});
    let mut a = worker(&doc);
    let token = common::tick_until_call(&mut a, 1).unwrap();
    let c1 = consent_doc("support_copilot", &[("acme", "opt_out")]);
    a.respond_http_call(token, 200, &[], c1.as_bytes()).unwrap();
    assert_eq!(route(&mut a, "acme"), "support_rules");

    // A pushed configuration that keeps the class serves the fetched records at once (its own
    // inline records do not come back) ...
    let mut b = common::host();
    b.share_data_with(&a);
    b.add_cluster(CLUSTER);
    b.state_mut().time_nanos = a.state().time_nanos;
    let pushed = killed(&doc, "v2");
    assert!(b.configure(pushed.as_bytes()).unwrap(), "{:#?}", b.logs());
    assert_eq!(
        route(&mut b, "acme"),
        "support_rules",
        "acme's fetched opt-out"
    );
    assert_eq!(
        route(&mut b, "globex"),
        "support_model_a",
        "globex's inline opt-out is gone"
    );

    // ... and one that drops the class those records name is refused, so Envoy keeps the
    // configuration that works instead of silently dropping every fetched opt-out.
    let mut c = common::host();
    c.share_data_with(&a);
    c.add_cluster(CLUSTER);
    let dropped = class_renamed(&doc, "v3", "support_assistant");
    assert!(!c.configure(dropped.as_bytes()).unwrap());
    assert!(
        c.logs().iter().any(|l| l.level == LogLevel::Error
            && l.message.starts_with(
                "switchyard: policy rejected: it cannot serve the documents the workers fetched"
            )),
        "{:#?}",
        c.logs()
    );
}

#[test]
fn a_document_the_server_no_longer_serves_is_never_paired() {
    let mut host = worker(&both_sources(1000));
    let next_calls = |host: &mut FakeHost| {
        for _ in 0..8 {
            host.advance_and_tick().unwrap();
            if let (Some(p), Some(c)) = call_tokens(host) {
                return (p, c);
            }
        }
        panic!("both sources fetched: {:?}", host.pending_http_calls());
    };
    let (p, c) = next_calls(&mut host);
    let p1 = killed(&bootstrap(), "v1");
    host.respond_http_call(p, 200, &[("etag", "\"p1\"")], p1.as_bytes())
        .unwrap();
    let c1 = consent_doc("support_copilot", &[("acme", "opt_out")]);
    host.respond_http_call(c, 200, &[("etag", "\"c1\"")], c1.as_bytes())
        .unwrap();
    assert_eq!(route(&mut host, "acme"), "support_rules");

    // v2 (a renamed class) does not fit the live records and waits ...
    let (p, c) = next_calls(&mut host);
    let p2 = class_renamed(&bootstrap(), "v2", "support_assistant");
    host.respond_http_call(p, 200, &[("etag", "\"p2\"")], p2.as_bytes())
        .unwrap();
    host.respond_http_call(c, 304, &[], b"").unwrap();
    // ... then the server goes back to v1 (asked about the waiting v2 by its ETag, it sends
    // v1 whole), and later serves records for the new class name: they must not be paired
    // with the v2 nobody serves any more.
    let (p, c) = next_calls(&mut host);
    let asked = host
        .pending_http_calls()
        .iter()
        .find(|call| call.token == p)
        .and_then(|call| call.header("if-none-match"));
    assert_eq!(asked.as_deref(), Some("\"p2\""));
    host.respond_http_call(p, 200, &[("etag", "\"p1\"")], p1.as_bytes())
        .unwrap();
    let c2 = consent_doc("support_assistant", &[("acme", "opt_out")]);
    host.respond_http_call(c, 200, &[("etag", "\"c2\"")], c2.as_bytes())
        .unwrap();
    let swaps = info_lines(&host, "switchyard: policy swap:");
    assert!(
        swaps.iter().all(|l| !l.contains("-> v2,")),
        "v2 was published: {swaps:#?}"
    );
    assert_eq!(
        route(&mut host, "acme"),
        "support_rules",
        "v1 with c1 still"
    );
}

/// The example policy with both sources at their defaults (`until_fetched` safe).
fn safe_until_fetched() -> Value {
    let mut doc = example();
    doc["source"] = json!({"cluster": CLUSTER, "path": "/policy.json"});
    doc["consent_source"] = json!({"cluster": CLUSTER, "path": "/consent.json"});
    doc
}

/// The served support route's cluster and its exposure item for `tenant`.
fn served(host: &mut FakeHost, tenant: &str) -> (String, String) {
    let result = host.request(&common::chat(tenant, "conv-1")).unwrap();
    let upstream = result.upstream().expect("forwarded");
    let header = |name: &str| String::from_utf8_lossy(upstream.get(name).unwrap()).into_owned();
    (header(ROUTE), header("x-switchyard-exposure"))
}

/// A proxy that starts while its policy server is unreachable must not serve an older policy
/// than the operator's: an opt-out or a kill switch recorded at the source since the bootstrap
/// was written would be lost. Until each source's first document, its part is served safe.
#[test]
fn until_the_first_document_flags_are_off_and_consent_denies() {
    let mut host = worker(&safe_until_fetched());
    // Nothing fetched: acme (no record, override to candidate) is denied, as everyone.
    let (cluster, exposure) = served(&mut host, "acme");
    assert_eq!(cluster, "support_rules");
    assert!(
        exposure.contains(";reason=CONSENT_DENIED;error=PROVIDER_NOT_READY;"),
        "{exposure}"
    );
    assert!(
        host.logs().iter().any(|l| l.level == LogLevel::Info
            && l.message.starts_with("switchyard: policy swap: none -> 2026-11-21.3")
            && l.message.ends_with("; every flag serves its off variation until the policy source's first document arrives; consent-gated flags deny every tenant until the consent source's first document arrives")),
        "{:#?}",
        host.logs()
    );

    // The server is down: still safe, and counted.
    host.advance_and_tick().unwrap();
    let (policy_call, consent_call) = call_tokens(&host);
    host.fail_http_call(policy_call.unwrap()).unwrap();
    host.respond_http_call(consent_call.unwrap(), 503, &[], b"down")
        .unwrap();
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(2));
    assert_eq!(served(&mut host, "acme").0, "support_rules");

    // The consent records arrive (acme has none): consent allows, flags are still off.
    let consent = consent_doc("support_copilot", &[("globex", "opt_out")]);
    let (policy_call, consent_call) = loop {
        host.advance_and_tick().unwrap();
        if let (Some(p), Some(c)) = call_tokens(&host) {
            break (p, c);
        }
    };
    host.respond_http_call(consent_call, 200, &[], consent.as_bytes())
        .unwrap();
    let (cluster, exposure) = served(&mut host, "acme");
    assert_eq!(cluster, "support_model_a", "off variation: control");
    assert!(
        exposure.contains(";reason=ERROR;error=PROVIDER_NOT_READY;"),
        "{exposure}"
    );
    assert_eq!(served(&mut host, "globex").0, "support_rules", "opted out");

    // The policy arrives, the same text as the bootstrap: now it serves as written.
    let text = serde_json::to_string_pretty(&safe_until_fetched()).unwrap();
    host.respond_http_call(policy_call, 200, &[], text.as_bytes())
        .unwrap();
    let (cluster, exposure) = served(&mut host, "acme");
    assert_eq!(cluster, "support_model_b", "acme's override");
    assert!(!exposure.contains("PROVIDER_NOT_READY"), "{exposure}");
    let swaps = info_lines(&host, "switchyard: policy swap:");
    assert!(
        swaps[0].contains("the consent source's first document arrived"),
        "{swaps:#?}"
    );
    assert!(
        swaps[1].contains("the policy source's first document arrived"),
        "{swaps:#?}"
    );

    // A worker configured now serves the fetched pair at once.
    let mut other = common::host();
    other.add_cluster(CLUSTER);
    other.share_data_with(&host);
    assert!(other.configure(text.as_bytes()).unwrap());
    assert_eq!(served(&mut other, "acme").0, "support_model_b");
    assert_eq!(served(&mut other, "globex").0, "support_rules");
}
