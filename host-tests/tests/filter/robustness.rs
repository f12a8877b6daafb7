//! Random header maps never trap the module: odd bytes (non-UTF-8, NUL, empty names), 64 KiB
//! values, hundreds of headers, empty values, odd source addresses. And on every one of them
//! the filter decides exactly what the native engine decides for the request as the plugin
//! documents it (non-UTF-8 headers absent, a later copy not read in place of a first that is
//! not UTF-8, owned headers removed, port stripped).

use std::cell::RefCell;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use switchyard_host_tests::{Action, FakeHost, HttpRequest};
use switchyard_policy::CompiledPolicy;

use crate::common;

type Header = (Vec<u8>, Vec<u8>);

fn name() -> impl Strategy<Value = Vec<u8>> {
    let known = prop::sample::select(vec![
        ":method",
        ":path",
        ":authority",
        ":scheme",
        "host",
        "x-tenant-id",
        "X-Tenant-Id",
        "x-user-id",
        "x-conversation-id",
        "x-plan",
        "x-region",
        "x-app-version",
        "x-seats",
        "x-model",
        "x-beta",
        "cookie",
        "x-switchyard-cluster",
        "x-switchyard-exposure",
        "x-switchyard-policy-version",
        "x-switchyard-attr-model-route",
        "",
    ]);
    prop_oneof![
        5 => known.prop_map(|s| s.as_bytes().to_vec()),
        2 => "[a-zA-Z0-9:_-]{0,24}".prop_map(String::into_bytes),
        2 => vec(any::<u8>(), 0..32),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    let known = prop::sample::select(vec![
        "acme",
        "globex",
        "initech",
        "bank-one",
        "our-company",
        "pro",
        "enterprise",
        "free",
        "POST",
        "GET",
        "/v1/chat/completions",
        "/v1/agent/run?x=1",
        "/v1/agent",
        "api.example",
        "API.Example:8443",
        "sid=1; beta=yes",
        "a=%ff%00; b",
        "1.2.3",
        "v2.0.0-rc.1",
        "12",
        "-1e400",
        "c-77",
        "",
    ]);
    prop_oneof![
        6 => known.prop_map(|s| s.as_bytes().to_vec()),
        3 => vec(any::<u8>(), 0..64),
        2 => "\\PC{0,40}".prop_map(String::into_bytes),
        // 64 KiB: a random prefix, then one byte repeated.
        1 => (vec(any::<u8>(), 0..16), any::<u8>()).prop_map(|(mut v, fill)| {
            v.resize(64 * 1024, fill);
            v
        }),
    ]
}

fn headers() -> impl Strategy<Value = Vec<Header>> {
    prop_oneof![
        8 => vec((name(), value()), 0..24),
        1 => vec((name(), value()), 100..400),
    ]
}

fn source_address() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("10.20.30.40:5555".to_string())),
        Just(Some("[2001:db8::1]:443".to_string())),
        Just(Some("::1".to_string())),
        "[0-9a-f.:\\[\\]]{0,40}".prop_map(Some),
        "\\PC{0,20}".prop_map(Some),
    ]
}

/// Request prefixes that reach the policies' flags, or none at all.
fn base() -> impl Strategy<Value = Vec<Header>> {
    let pseudo = |m: &str, p: &str, a: &str| -> Vec<Header> {
        vec![
            (b":method".to_vec(), m.as_bytes().to_vec()),
            (b":path".to_vec(), p.as_bytes().to_vec()),
            (b":authority".to_vec(), a.as_bytes().to_vec()),
        ]
    };
    prop_oneof![
        Just(Vec::new()),
        Just(pseudo("POST", "/v1/chat/completions", "api.example")),
        Just(pseudo("POST", "/v1/agent/run", "api.example")),
        Just(pseudo("GET", "/v1/ops?beta=1", "API.example:8443")),
    ]
}

// --- The request as the plugin documents it (plugin/src/request.rs, headers.rs) ----------

fn documented_request(
    policy: &CompiledPolicy,
    headers: &[Header],
    source: Option<&str>,
) -> switchyard_policy::Request<'static> {
    let mut request = switchyard_policy::Request {
        source_ip: source
            .map(|s| {
                switchyard_policy::ip_without_port(s.trim())
                    .to_string()
                    .into()
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    let mut host_header = None;
    let mut absent: Vec<String> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let owned = policy.is_owned_header(String::from_utf8_lossy(&name).as_bytes());
        let Ok(name) = String::from_utf8(name) else {
            continue;
        };
        if owned {
            continue;
        }
        // Method, path and host are decoded with U+FFFD; other values must be UTF-8.
        let lossy = || String::from_utf8_lossy(value).into_owned();
        let slot = match name.as_str() {
            ":method" => &mut request.method,
            ":path" => &mut request.path,
            ":authority" => &mut request.host,
            n if n.starts_with(':') => continue,
            _ => {
                if name == "host" && host_header.is_none() {
                    host_header = Some(lossy().into());
                }
                // The first copy of a header is the one read: a later copy does not stand in
                // for a first one that is not UTF-8 (each `cookie` header is read, though).
                let earlier = request.headers.iter().any(|(n, _)| *n == name);
                match std::str::from_utf8(value) {
                    Ok(value) if !absent.contains(&name) => {
                        request
                            .headers
                            .push((name.into(), value.to_string().into()));
                    }
                    Ok(_) => {}
                    Err(_) if name != "cookie" && !earlier => absent.push(name),
                    Err(_) => {}
                }
                continue;
            }
        };
        if slot.is_empty() {
            *slot = lossy().into();
        }
    }
    if request.host.is_empty() {
        request.host = host_header.unwrap_or_default();
    }
    request
}

// -----------------------------------------------------------------------------------------

struct Subject {
    text: String,
    compiled: CompiledPolicy,
    host: FakeHost,
}

fn check(subject: &mut Subject, request: &HttpRequest) -> Result<(), TestCaseError> {
    if subject.host.broken().is_some() {
        // Keep shrinking meaningful: each case starts on a working VM.
        subject.host = common::host_with(&subject.text);
    }
    let result = match subject.host.request(request) {
        Ok(result) => result,
        Err(error) => {
            return Err(TestCaseError::fail(format!(
                "the module trapped: {error:#}"
            )))
        }
    };
    let replied = result.local_reply.is_some();
    prop_assert_eq!(result.request_action == Action::Continue, !replied);

    let text = result.filter_state_str("wasm.switchyard_exposure");
    let state: serde_json::Value = match text.as_deref().map(serde_json::from_str) {
        Some(Ok(state)) => state,
        other => return Err(TestCaseError::fail(format!("bad filter state {other:?}"))),
    };
    let native_request = documented_request(
        &subject.compiled,
        &request.headers,
        request.source_address.as_deref(),
    );
    let outcome = subject.compiled.evaluate(&native_request);
    let native: serde_json::Value =
        serde_json::from_str(&subject.compiled.outcome_json(&outcome)).unwrap();
    prop_assert_eq!(
        &state,
        &native,
        "filter and engine disagree on {:?}",
        native_request
    );

    // Upstream, every owned header is one the filter set, once.
    if let Some(upstream) = result.upstream() {
        let mut expected = subject.compiled.exposure_headers(&outcome);
        if let Some(cluster) = outcome.cluster {
            expected.push((
                subject.compiled.settings().route_header.as_str(),
                cluster.into(),
            ));
        }
        for (name, value) in upstream.iter() {
            let lossy = String::from_utf8_lossy(name);
            if subject.compiled.is_owned_header(lossy.as_bytes()) {
                let value = String::from_utf8_lossy(value);
                prop_assert!(
                    expected.iter().any(|(n, v)| *n == lossy && *v == value),
                    "unexpected owned header upstream: {}: {}",
                    lossy,
                    value
                );
            }
        }
        for (name, _) in &expected {
            prop_assert_eq!(upstream.get_all(name).len(), 1, "{} set once", name);
        }
    }
    Ok(())
}

#[test]
fn random_header_maps_never_trap_and_match_the_engine() {
    let subjects: Vec<Subject> = [
        common::example_policy(),
        common::read_repo_file("testdata/policies/operators.json"),
    ]
    .into_iter()
    .map(|text| Subject {
        compiled: switchyard_policy::load(&text).unwrap(),
        host: common::host_with(&text),
        text,
    })
    .collect();
    let subjects = RefCell::new(subjects);
    let ran = std::cell::Cell::new(0usize);

    let mut runner = TestRunner::new(Config {
        cases: 1000,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (base(), headers(), source_address());
    let outcome = runner.run(&strategy, |(base, headers, source)| {
        let mut request = HttpRequest::empty();
        for (name, value) in base.iter().chain(&headers) {
            request = request.header(name, value);
        }
        request.source_address = source;
        ran.set(ran.get() + 1);
        for subject in subjects.borrow_mut().iter_mut() {
            check(subject, &request)?;
        }
        Ok(())
    });
    if let Err(error) = outcome {
        panic!("{error}");
    }
    assert!(ran.get() >= 1000, "only {} cases ran", ran.get());
    for subject in subjects.borrow().iter() {
        assert!(subject.host.broken().is_none());
    }
}

/// The documented choices, one request each: a non-UTF-8 value is absent for evaluation
/// but still forwarded; 64 KiB values, hundreds of headers and empty values are fine.
#[test]
fn edge_inputs_are_handled_as_documented() {
    let text = common::example_policy();
    let compiled = switchyard_policy::load(&text).unwrap();
    let mut host = common::host_with(&text);

    // A tenant id that is not UTF-8 is no tenant: the opt-in agent flag rejects.
    let agent = HttpRequest::new("POST", "/v1/agent/run", "api.example")
        .header("x-tenant-id", b"initech\xff")
        .header("x-user-id", "u-1");
    let result = host.request(&agent).unwrap();
    assert_eq!(result.local_reply.as_ref().map(|r| r.status), Some(403));
    // Nor does a later copy stand in for it: the opted-in tenant behind a mangled first copy
    // is refused too (with the later copy alone, it is let through).
    let behind = HttpRequest::new("POST", "/v1/agent/run", "api.example")
        .header("x-tenant-id", b"globex\xff")
        .header("x-tenant-id", "initech")
        .header("x-user-id", "u-1");
    let result = host.request(&behind).unwrap();
    assert_eq!(result.local_reply.as_ref().map(|r| r.status), Some(403));
    let alone = HttpRequest::new("POST", "/v1/agent/run", "api.example")
        .header("x-tenant-id", "initech")
        .header("x-user-id", "u-1");
    let result = host.request(&alone).unwrap();
    assert_eq!(result.local_reply.as_ref().map(|r| r.status), None);

    // A stray byte in the query string leaves the path in the agent flag's scope: the
    // unconsented tenant is still refused, not passed through to the default route.
    let stray = HttpRequest::empty()
        .header(":method", "POST")
        .header(":path", b"/v1/agent/run?x=\xff")
        .header(":authority", "api.example")
        .header("x-tenant-id", "acme")
        .header("x-user-id", "u-1");
    let result = host.request(&stray).unwrap();
    assert_eq!(result.local_reply.as_ref().map(|r| r.status), Some(403));

    // ... and on the chat route the request is decided as if the header were missing, while
    // the header itself still goes upstream untouched.
    let chat = HttpRequest::new("POST", "/v1/chat/completions", "api.example")
        .header("x-tenant-id", b"acme\xc3\x28")
        .header("x-conversation-id", "c-1");
    let result = host.request(&chat).unwrap();
    let upstream = result.upstream().unwrap();
    assert_eq!(upstream.get("x-tenant-id"), Some(&b"acme\xc3\x28"[..]));
    let without = documented_request(
        &compiled,
        &[
            (b":method".to_vec(), b"POST".to_vec()),
            (b":path".to_vec(), b"/v1/chat/completions".to_vec()),
            (b":authority".to_vec(), b"api.example".to_vec()),
            (b"x-conversation-id".to_vec(), b"c-1".to_vec()),
        ],
        None,
    );
    let native: serde_json::Value =
        serde_json::from_str(&compiled.outcome_json(&compiled.evaluate(&without))).unwrap();
    assert_eq!(common::exposure_json(&result), native);

    // 64 KiB values, 500 headers, empty values.
    let mut big = common::chat("acme", "c-1")
        .header("x-plan", vec![b'p'; 64 * 1024])
        .header("x-empty", "");
    for i in 0..500 {
        big = big.header(format!("x-filler-{i}"), vec![b'v'; i % 7]);
    }
    let result = host.request(&big).unwrap();
    let upstream = result.upstream().unwrap();
    assert_eq!(
        upstream.get_str("x-switchyard-cluster"),
        Some("support_model_b")
    );
    assert_eq!(upstream.get("x-plan").map(<[u8]>::len), Some(64 * 1024));
    assert_eq!(upstream.get_str("x-empty"), Some(""));
    assert_eq!(upstream.len(), result.request_headers.len());
    assert!(host.broken().is_none());
}

/// A damaged `google.protobuf.Struct` configuration (bytes flipped, cut or inserted anywhere
/// in the example policy's encoding) never traps the module: it is refused with a logged
/// error, or, if the damage still decodes to a valid policy, accepted and served from.
#[test]
fn damaged_struct_configurations_never_trap() {
    let good = common::struct_bytes(&common::example_policy());
    let host = RefCell::new(common::host());
    let refused = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let damage = vec((0..good.len(), any::<u8>(), 0u8..3), 1..4);
    let outcome = runner.run(&damage, |edits| {
        let mut bytes = good.clone();
        for (at, byte, kind) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match kind {
                // An earlier edit may have cut the bytes to nothing: then there is none to replace.
                0 => {
                    if let Some(b) = bytes.get_mut(at) {
                        *b = byte;
                    }
                }
                1 => bytes.truncate(at),
                _ => bytes.insert(at, byte),
            }
        }
        let mut host = host.borrow_mut();
        let logs_before = host.logs().len();
        let accepted = host
            .configure(&bytes)
            .map_err(|e| TestCaseError::fail(format!("configure trapped: {e:#}")))?;
        if !accepted {
            refused.set(refused.get() + 1);
            prop_assert!(
                host.logs()[logs_before..]
                    .iter()
                    .any(|l| l.message.starts_with("switchyard: policy rejected: ")),
                "a refusal without a logged reason"
            );
        }
        host.request(&common::chat("acme", "c-1"))
            .map_err(|e| TestCaseError::fail(format!("request trapped: {e:#}")))?;
        prop_assert!(host.broken().is_none());
        Ok(())
    });
    if let Err(error) = outcome {
        panic!("{error}");
    }
    assert!(
        refused.get() >= 200,
        "only {} damaged configurations refused",
        refused.get()
    );
}
