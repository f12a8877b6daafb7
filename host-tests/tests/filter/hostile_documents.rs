//! Inputs the filter does not control, built to exhaust it: a configuration or fetched
//! document with thousands of repeated keys under a megabyte-long key, thousands of small
//! regexes that each compile large, millions of errors, deep nesting, hostile request bytes
//! and garbage in shared data. Each is refused or served as documented, without a trap, and
//! the module's memory (which never shrinks) stays small. Before the error and regex budgets,
//! the first three grew the module to its 4 GiB limit and trapped it.

use serde_json::{json, Value};
use switchyard_host_tests::FakeHost;

use crate::common;

const CLUSTER: &str = "policy_server";

fn worker(policy: &Value) -> FakeHost {
    common::worker_with_cluster(policy, CLUSTER)
}

/// The module's memory after a hostile document: a few times what the example policy takes,
/// far from the 4 GiB at which it trapped.
const MAX_MIB: usize = 256;

/// The module answered a hostile fetched document without trapping, counted it as the
/// `failures`th failed fetch and stayed small.
fn assert_refused_fetch(host: &mut FakeHost, answered: wasmtime::Result<()>, failures: i64) {
    assert!(
        answered.is_ok() && host.broken().is_none(),
        "expected a counted fetch failure, but the module trapped: {answered:?}; {}",
        last_words(host)
    );
    assert_eq!(
        host.metric("switchyard.policy.fetch_failures"),
        Some(failures)
    );
    assert!(host.memory_size() >> 20 < MAX_MIB, "{}", last_words(host));
}

/// What the module wrote to stderr (Rust's allocation-failure message) and its memory size.
fn last_words(host: &mut FakeHost) -> String {
    let mib = host.memory_size() >> 20;
    let stderr = String::from_utf8_lossy(&host.state().stderr)
        .trim()
        .to_string();
    format!("stderr: {stderr:?}; linear memory: {mib} MiB")
}

fn tick_until_calls(host: &mut FakeHost, ticks: usize) {
    for _ in 0..ticks {
        host.advance_and_tick().unwrap();
        if !host.pending_http_calls().is_empty() {
            return;
        }
    }
    panic!("no fetch after {ticks} ticks");
}

fn token_for(host: &FakeHost, path: &str) -> u32 {
    host.pending_http_calls()
        .iter()
        .find(|c| c.header(":path").as_deref() == Some(path))
        .unwrap_or_else(|| panic!("no call for {path}: {:?}", host.pending_http_calls()))
        .token
}

/// `{"tenants": {"<key_len × k>": {"a": 0, "a": 0, ... n times}}}`: every repeat of `a` is
/// recorded with its full place (`tenants.kkkk….a`), so each 6-byte repeat costs `key_len`
/// bytes of memory.
fn repeated_keys_doc(prefix: &str, key_len: usize, n: usize) -> String {
    let key = "k".repeat(key_len);
    let repeats = vec!["\"a\":0"; n].join(",");
    format!("{{{prefix}\"{key}\":{{{repeats}}}}}")
}

#[test]
fn a_configuration_with_repeated_keys_under_a_long_key_is_refused() {
    // 1 MB key + 4,500 six-byte repeats: a 1.03 MB document (the limit is 16 MiB).
    let doc = repeated_keys_doc("\"version\":\"1\",\"flags\":[],", 1_000_000, 4_500);
    assert!(doc.len() < 1_100_000);
    let mut host = common::host();
    let configured = host.configure(doc.as_bytes());
    assert!(
        configured.is_ok() && host.broken().is_none(),
        "expected the policy to be refused, but the module trapped: {configured:?}; {}",
        last_words(&mut host)
    );
    assert!(!configured.unwrap(), "the policy is refused");
    let errors = host
        .logs_at_least(switchyard_host_tests::LogLevel::Error)
        .len();
    assert!(
        (1..=switchyard_policy::MAX_LISTED_ERRORS + 1).contains(&errors),
        "{errors} error lines"
    );
    assert!(
        host.memory_size() >> 20 < MAX_MIB,
        "{}",
        last_words(&mut host)
    );
}

/// The example policy with a consent source (and a policy source, so two workers can pair).
fn with_consent_source() -> Value {
    let mut doc: Value = serde_json::from_str(&common::example_policy()).unwrap();
    doc["source"] = json!({"cluster": CLUSTER, "path": "/policy.json", "interval_ms": 1000});
    doc["consent_source"] =
        json!({"cluster": CLUSTER, "path": "/consent.json", "interval_ms": 1000});
    doc
}

#[test]
fn a_fetched_consent_document_with_repeated_keys_is_a_counted_failure() {
    let mut host = worker(&with_consent_source());
    tick_until_calls(&mut host, 8);
    let token = token_for(&host, "/consent.json");
    // {"tenants": {"kkk…(1 MB)": {"a":0, × 4,500}}}: about 1 MB on the wire.
    let body = repeated_keys_doc("\"tenants\":{", 1_000_000, 4_500) + "}";
    let answered = host.respond_http_call(token, 200, &[("etag", "\"c1\"")], body.as_bytes());
    assert_refused_fetch(&mut host, answered, 1);
}

#[test]
fn a_fetched_policy_with_many_small_regexes_is_refused() {
    let mut policy: Value = serde_json::from_str(&common::example_policy()).unwrap();
    policy["source"] = json!({"cluster": CLUSTER, "path": "/policy.json", "interval_ms": 1000});
    let mut host = worker(&policy);
    tick_until_calls(&mut host, 8);
    let token = token_for(&host, "/policy.json");
    // One 15-byte regex, under MAX_REGEX_LEN and regex-lite's 1 MiB size limit, compiles to
    // ~0.6-0.9 MiB; 8,000 copies in one clause (MAX_VALUES is 100,000): a 150 KB document.
    let mut fetched = policy.clone();
    fetched["version"] = json!("bomb");
    fetched["segments"]["bomb"] = json!([{
        "attribute": "tenant",
        "op": "matches",
        "values": vec!["(?:a{100}){320}"; 8_000],
    }]);
    let body = serde_json::to_string(&fetched).unwrap();
    assert!(body.len() < 200_000, "{}", body.len());
    let answered = host.respond_http_call(token, 200, &[("etag", "\"p1\"")], body.as_bytes());
    assert_refused_fetch(&mut host, answered, 1);
    // Many distinct small ones: the policy's regex count is bounded too.
    let mut many = policy.clone();
    many["version"] = json!("many");
    let patterns: Vec<String> = (0..=switchyard_policy::limits::MAX_REGEXES)
        .map(|i| format!("^(?:a{{30}}){{30}}x{i}$"))
        .collect();
    many["segments"]["many"] =
        json!([{"attribute": "tenant", "op": "matches", "values": patterns}]);
    host.advance_ms(1_000);
    tick_until_calls(&mut host, 8);
    let token = token_for(&host, "/policy.json");
    let body = serde_json::to_string(&many).unwrap();
    let answered = host.respond_http_call(token, 200, &[("etag", "\"p2\"")], body.as_bytes());
    assert_refused_fetch(&mut host, answered, 2);
    assert!(host.logs().iter().any(|l| l
        .message
        .contains("regular expressions are over their budget")));
}

#[test]
fn a_hostile_waiting_document_does_not_stop_a_worker_that_never_fetched_it() {
    let doc = with_consent_source();
    let mut a = worker(&doc);
    let mut b = common::host();
    b.add_cluster(CLUSTER);
    b.share_data_with(&a);
    assert!(b
        .configure(serde_json::to_string(&doc).unwrap().as_bytes())
        .unwrap());

    // Worker a wins both leases and fetches the consent document; the document is recorded in
    // shared data as the consent source's latest fetch, and refused.
    tick_until_calls(&mut a, 8);
    let consent = token_for(&a, "/consent.json");
    let body = repeated_keys_doc("\"tenants\":{", 1_000_000, 4_500) + "}";
    a.respond_http_call(consent, 200, &[("etag", "\"c1\"")], body.as_bytes())
        .unwrap();
    assert!(a.broken().is_none());
    assert_eq!(a.metric("switchyard.policy.fetch_failures"), Some(1));

    // Worker b takes the policy lease after it expires and fetches a policy: it tries the
    // waiting consent document as its partner first.
    b.advance_ms(2_000);
    tick_until_calls(&mut b, 8);
    let policy = token_for(&b, "/policy.json");
    let mut served: Value = serde_json::from_str(&common::example_policy()).unwrap();
    served["version"] = json!("v2");
    served["source"] = doc["source"].clone();
    served["consent_source"] = doc["consent_source"].clone();
    let answered = b.respond_http_call(
        policy,
        200,
        &[("etag", "\"p2\"")],
        serde_json::to_string(&served).unwrap().as_bytes(),
    );
    assert!(
        answered.is_ok() && b.broken().is_none(),
        "worker b never fetched the consent document, yet trapped on it: {answered:?}; {}",
        last_words(&mut b)
    );
    // The refused partner is passed over: the new policy goes live with the live records.
    let served = b.request(&common::chat("acme", "c-1")).unwrap();
    let version = served
        .upstream()
        .and_then(|h| h.get("x-switchyard-policy-version"));
    assert_eq!(version, Some(&b"v2"[..]));
}

/// Checked-safe: serde_json's 128-level limit keeps the recursive readers (serde_json, the
/// repeated-key visitor, `Step::place`, the consent merge's re-serialization) inside the
/// module's 1 MiB stack, for the configuration and for a fetched consent document.
#[test]
fn deep_nesting_is_refused_without_a_trap() {
    let deep = |levels: usize| format!("{}0{}", "[".repeat(levels), "]".repeat(levels));
    let mut host = common::host();
    for levels in [126, 127, 128, 129, 5_000] {
        let doc = format!("{{\"version\":\"1\",\"flags\":[],\"x\":{}}}", deep(levels));
        assert!(!host.configure(doc.as_bytes()).unwrap(), "{levels}");
    }
    assert!(host.broken().is_none());

    let mut host = worker(&with_consent_source());
    tick_until_calls(&mut host, 8);
    let token = token_for(&host, "/consent.json");
    let body = format!("{{\"tenants\":{}}}", deep(126));
    host.respond_http_call(token, 200, &[], body.as_bytes())
        .unwrap();
    assert!(host.broken().is_none());
    assert_eq!(host.metric("switchyard.policy.fetch_failures"), Some(1));
}

/// Without any repeated key, a 16 MB configuration whose every consent record lacks its three
/// required fields, under 200-byte tenant names, has 4.36 M errors. Listing each grew the
/// module to 3.5 GiB and sent the host one log line per error; now the first hundred are
/// listed and the rest counted.
#[test]
fn a_configuration_with_millions_of_errors_lists_a_hundred() {
    let records: Vec<String> = (0..200).map(|j| format!("\"c{j:03}\":{{}}")).collect();
    let records = records.join(",");
    let mut tenants = Vec::new();
    let mut size = 0;
    while size < 16_000_000 {
        let name = format!("t{:07}{}", tenants.len(), "x".repeat(192));
        size += name.len() + 2_000;
        tenants.push(format!("\"{name}\":{{{records}}}"));
    }
    let text = format!(
        "{{\"version\":\"1\",\"consent\":{{\"tenant_attribute\":\"t\",\"classes\":{{\"c000\":{{\"mode\":\"opt_in\"}}}},\"tenants\":{{{}}}}},\"context\":{{\"t\":{{\"header\":\"x-t\"}}}},\"flags\":[]}}",
        tenants.join(",")
    );
    assert!(text.len() < switchyard_policy::limits::MAX_DOCUMENT_BYTES);
    let mut host = common::host();
    let configured = host.configure(text.as_bytes());
    assert!(
        configured.is_ok() && host.broken().is_none(),
        "{}",
        last_words(&mut host)
    );
    assert!(!configured.unwrap());
    let lines = host.logs_at_least(switchyard_host_tests::LogLevel::Error);
    assert_eq!(lines.len(), switchyard_policy::MAX_LISTED_ERRORS + 1);
    let last = &lines[lines.len() - 1].message;
    assert!(
        last.contains("more problem(s) not listed"),
        "the last line counts the rest: {last}"
    );
    assert!(
        host.memory_size() >> 20 < MAX_MIB,
        "{}",
        last_words(&mut host)
    );
}

/// Checked-safe candidates, driven through the real module: every operator on every kind of
/// attribute (cookie, query, header, path, host, method, source_ip) fed hostile request and
/// response bytes.
#[test]
fn hostile_request_and_response_bytes_never_trap() {
    use switchyard_host_tests::HttpRequest;
    let ops: [(&str, Value); 17] = [
        ("in", json!(["x", "é"])),
        ("not_in", json!(["x"])),
        ("starts_with", json!(["/v1", "é"])),
        ("ends_with", json!([".example", "é"])),
        ("contains", json!(["é", "%"])),
        ("matches", json!(["^a.*z$", "é"])),
        ("exists", json!([])),
        ("lt", json!(["10"])),
        ("lte", json!(["10"])),
        ("gt", json!(["-1e308"])),
        ("gte", json!(["0"])),
        ("semver_lt", json!(["1.2.3"])),
        ("semver_lte", json!(["1.2.3"])),
        ("semver_gt", json!(["1.2.3-rc.1"])),
        ("semver_gte", json!(["0.0.0"])),
        ("semver_eq", json!(["1.2.3+b"])),
        ("cidr", json!(["10.0.0.0/8", "::1"])),
    ];
    let attrs = ["ck", "q", "h", "path", "host", "method", "source_ip"];
    let mut flags = Vec::new();
    for (op, values) in &ops {
        for attr in attrs {
            let mut clause = json!({"attribute": attr, "op": op});
            if *op != "exists" {
                clause["values"] = values.clone();
            }
            flags.push(json!({
                "key": format!("f_{op}_{attr}"),
                "unit": attr,
                "variations": {"a": {"cluster": "ca", "attributes": {"m": "a"}}, "b": {}},
                "off_variation": "b",
                "rules": [{"when": [clause], "split": [{"variation": "a", "weight": 1}, {"variation": "b", "weight": 1}]}],
                "default": {"serve": "b"},
            }));
        }
    }
    flags.push(json!({
        "key": "consented", "feature_class": "c", "on_consent_denied": {"reject": {"status": 403}},
        "match": {"path_prefix": "/reject"},
        "variations": {"a": {}}, "off_variation": "a", "default": {"serve": "a"},
    }));
    let policy = json!({
        "version": "1",
        "context": {"ck": {"cookie": "sid"}, "q": {"query": "plan"}, "h": {"header": "x-h"}},
        "consent": {"tenant_attribute": "h", "classes": {"c": {"mode": "opt_in"}}, "tenants": {}},
        "settings": {"response_headers": true, "expose_unit_ids": true,
                     "fallback_header": "x-fallback",
                     "pseudonym_key": "000102030405060708090a0b0c0d0e0f"},
        "flags": flags,
    });
    let mut host = common::host_with(&policy.to_string());

    let nasty: Vec<&[u8]> = vec![
        b"",
        b"\xff",
        b"\xc3",
        b"%",
        b"%E2%82",
        b"%zz",
        b"=",
        b";",
        b"=;=;",
        b"\"",
        b"\"\"",
        b"sid",
        b"sid=",
        b"sid=%",
        b"sid=%E2%82",
        b"sid=\"",
        b"sid=\xff",
        b"[",
        b"[::1",
        b"]:",
        b":",
        b"\xc3\xa9:80",
        b"h:\xc3\xa9",
        b"[\xc3\xa9]:x",
        b"::1",
        b"[::1]:80",
        b"1.2.3.4:",
        b"1.2.3.4:99999999999999999999",
        b"10.0.0.1",
        b"1.2.3",
        b"v1.2.3",
        b"NaN",
        b"-inf",
        b"1e999",
        b"azzzz\xc3\xa9z",
        b"\xc3\x89",
        b"\x00\x01\x7f",
        b"?",
        b"#",
        b"??##",
    ];
    let long_cookie: Vec<u8> = "a=b;".repeat(5_000).into_bytes();
    let long_query: Vec<u8> = format!("/v1?{}plan=%", "x=%zz&".repeat(5_000)).into_bytes();
    let mut requests = Vec::new();
    for v in &nasty {
        let mut path = b"/v1/x?plan=".to_vec();
        path.extend_from_slice(v);
        let mut cookie = b"sid=".to_vec();
        cookie.extend_from_slice(v);
        for reject in [false, true] {
            let mut r = HttpRequest::empty()
                .header(":method", v)
                .header(
                    ":path",
                    if reject {
                        b"/reject".to_vec()
                    } else {
                        path.clone()
                    },
                )
                .header(":authority", v)
                .header("host", v)
                .header("cookie", v)
                .header("cookie", &cookie)
                .header("x-h", v)
                .header("x-request-id", v)
                .header("traceparent", v)
                .source_address(String::from_utf8_lossy(v).into_owned())
                .response_header(":status", v)
                .response_header("x-fallback", v);
            if reject {
                r = r.header("x-switchyard-x", v);
            }
            requests.push(r);
        }
    }
    requests.push(
        HttpRequest::new("GET", "/v1", "api.example")
            .header("cookie", &long_cookie)
            .header(":path", &long_query),
    );
    let mut many = HttpRequest::new("GET", "/v1?plan=1", "a");
    for i in 0..100 {
        many = many.header("cookie", format!("sid={i}")).header("x-h", "");
    }
    requests.push(many);
    for request in &requests {
        host.request(request)
            .unwrap_or_else(|e| panic!("trapped on {request:?}: {e}"));
    }
    assert!(host.broken().is_none());
}

/// Checked-safe: whatever another worker (or another plugin on the same vm_id) leaves under
/// switchyard's shared-data keys, ticks, fetches and requests do not trap.
#[test]
fn garbage_in_shared_data_never_traps() {
    let doc = with_consent_source();
    let garbage: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\xff\xfe".to_vec(),
        b"18446744073709551615".to_vec(),
        b"-1".to_vec(),
        b"switchyard/1".to_vec(),
        b"switchyard/1\n\n\n".to_vec(),
        b"switchyard/1\n\"e\"\n99999999999999999999999\n{}".to_vec(),
        b"switchyard/1\n\"e\"\n1\n{\"tenants\":{}}".to_vec(),
        b"switchyard-live/1".to_vec(),
        b"switchyard-live/1 \n".to_vec(),
        b"switchyard-live/1 - -\n".to_vec(),
        b"switchyard-live/1 99999999999999999999 -\n".to_vec(),
        b"switchyard-live/1 5 5\nabc".to_vec(),
        b"switchyard-live/1 14 -\nswitchyard/1\n\xc3".to_vec(),
        b"switchyard-live/1 - 30\nswitchyard/1\ne\n1\n{\"tenants\":{}}".to_vec(),
        b"switchyard-live/1 - 33\nswitchyard/1\ne\n1\n{\"tenants\":\"\xc3\xa9\"}".to_vec(),
    ];
    for value in &garbage {
        let mut host = worker(&doc);
        let keys = host.state().shared_data.keys();
        assert!(keys.len() >= 4, "{keys:?}");
        for key in &keys {
            host.state().shared_data.set(key, value.clone(), 0);
        }
        for _ in 0..6 {
            host.advance_and_tick()
                .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(value)));
            for call in host.pending_http_calls().to_vec() {
                let body = if call.header(":path").as_deref() == Some("/consent.json") {
                    "{\"tenants\":{}}".to_string()
                } else {
                    common::example_policy()
                };
                host.respond_http_call(call.token, 200, &[("etag", "\"x\"")], body.as_bytes())
                    .unwrap();
            }
            host.request(&common::chat("acme", "c-1")).unwrap();
        }
        // A configuration on top of the garbage (the audit record and the live pair are read).
        let mut other = common::host();
        other.add_cluster(CLUSTER);
        other.share_data_with(&host);
        for key in host.state().shared_data.keys() {
            host.state().shared_data.set(&key, value.clone(), 0);
        }
        let _ = other
            .configure(serde_json::to_string(&doc).unwrap().as_bytes())
            .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(value)));
        assert!(host.broken().is_none() && other.broken().is_none());
    }
}

/// Ordinary patterns load in the filter as in the `switchyard` command (whose test
/// `ordinary_regular_expressions_are_accepted` loads the same ones): the size limit is counted
/// per build, and a host name matcher sits well inside both.
#[test]
fn ordinary_regular_expressions_load_in_the_filter() {
    let mut policy: Value = serde_json::from_str(&common::example_policy()).unwrap();
    policy["segments"]["ordinary"] = json!([{"attribute": "host", "op": "matches", "values": [
        r"^[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63}){0,10}$",
        r"^[A-Za-z0-9+/]{0,700}={0,2}$",
        r"^[\w.-]{1,64}@[\w.-]{1,255}$",
        "^(?:gpt-4o|gpt-4o-mini|claude-3-5-sonnet|claude-3-5-haiku|llama-3.1-70b|mistral-large)$",
    ]}]);
    let mut host = common::host();
    assert!(
        host.configure(policy.to_string().as_bytes()).unwrap(),
        "{:#?}",
        host.logs()
    );
}

/// A policy that loads and spends its whole regex budget on capture groups stays small once
/// requests have run every regex (each regex's matching cache is allocated on first use).
#[test]
fn a_policy_spending_its_regex_budget_on_groups_stays_small() {
    let mut policy: Value = serde_json::from_str(&common::example_policy()).unwrap();
    let max = switchyard_policy::limits::MAX_REGEXES;
    // Regexes of 50 groups each, as many as the budget allows, none of which matches.
    let groups = "()".repeat(50);
    let rules: Vec<Value> = (0..max / 51)
        .map(|i| {
            json!({"when": [{"attribute": "path", "op": "matches",
                        "values": [format!("{groups}q{i}")]}], "serve": "candidate"})
        })
        .collect();
    policy["flags"][0]["rules"] = Value::Array(rules);
    let mut host = common::host();
    assert!(
        host.configure(policy.to_string().as_bytes()).unwrap(),
        "{:#?}",
        host.logs()
    );
    for i in 0..20 {
        host.request(&common::chat("hooli", &format!("c-{i}")))
            .unwrap();
    }
    assert!(host.broken().is_none());
    assert!(
        host.memory_size() >> 20 < MAX_MIB,
        "{}",
        last_words(&mut host)
    );
}
