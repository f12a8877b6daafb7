//! Properties of bucketing and robustness, checked over generated inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard_policy::{load, CompiledPolicy, Request};

fn split_policy(weights: &[(&str, u64)], salt: Option<&str>) -> CompiledPolicy {
    let split: Vec<Value> = weights
        .iter()
        .map(|(v, w)| json!({"variation": v, "weight": w}))
        .collect();
    let variations: serde_json::Map<String, Value> = weights
        .iter()
        .map(|(v, _)| (v.to_string(), json!({"cluster": format!("cluster_{v}")})))
        .collect();
    let mut flag = json!({
        "key": "exp", "unit": "user", "variations": variations,
        "off_variation": weights[0].0, "default": {"split": split}
    });
    if let Some(s) = salt {
        flag["salt"] = json!(s);
    }
    let p = json!({"version": "p", "context": {"user": {"header": "x-user-id"}}, "flags": [flag]});
    load(&p.to_string()).unwrap()
}

fn variation_of(policy: &CompiledPolicy, unit: &str) -> String {
    let req = Request {
        headers: vec![("x-user-id".into(), unit.into())],
        ..Request::default()
    };
    let outcome = policy.evaluate(&req);
    outcome.decisions[0].variation.unwrap().to_string()
}

fn example_policy() -> CompiledPolicy {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/support-copilot/policy.json"
    );
    load(&std::fs::read_to_string(path).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A unit keeps its variation across re-compiles and whatever order requests come in.
    #[test]
    fn sticky_across_recompiles_and_orderings(
        units in prop::collection::vec("\\PC{1,40}", 1..40),
        shuffle_seed in any::<u64>(),
    ) {
        let first = split_policy(&[("a", 30), ("b", 30), ("c", 40)], None);
        let before: Vec<String> = units.iter().map(|u| variation_of(&first, u)).collect();
        let second = split_policy(&[("a", 30), ("b", 30), ("c", 40)], None);
        let mut order: Vec<usize> = (0..units.len()).collect();
        // A cheap deterministic shuffle from the seed.
        let mut s = shuffle_seed | 1;
        for i in (1..order.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        for i in order {
            prop_assert_eq!(&variation_of(&second, &units[i]), &before[i]);
        }
    }

    /// Raising the first-listed weight, total fixed, only ever moves units into that variation.
    #[test]
    fn raising_the_first_weight_only_moves_units_in(
        units in prop::collection::vec("[a-z0-9-]{1,24}", 1..60),
        low in 0u64..=100,
        raise in 0u64..=100,
    ) {
        let high = (low + raise).min(100);
        let before = split_policy(&[("new", low), ("old", 100 - low)], None);
        let after = split_policy(&[("new", high), ("old", 100 - high)], None);
        for u in &units {
            if variation_of(&before, u) == "new" {
                prop_assert_eq!(variation_of(&after, u), "new");
            }
        }
    }

    /// Arbitrary headers, paths and hosts never panic the engine, and the outcome is stable.
    #[test]
    fn arbitrary_requests_never_panic(
        headers in prop::collection::vec(("\\PC{0,20}", "\\PC{0,200}"), 0..40),
        path in "\\PC{0,100}",
        host in "\\PC{0,30}",
        source_ip in "\\PC{0,30}",
        method in "[A-Z]{0,8}",
    ) {
        let policy = example_policy();
        let headers = headers.into_iter().map(|(n, v)| (n.into(), v.into())).collect();
        let mut req = Request {
            method: method.into(),
            path: path.into(),
            host: host.into(),
            source_ip: source_ip.into(),
            headers,
        };
        let a = policy.eval_json(&policy.evaluate(&req));
        req.headers.push(("x-tenant-id".into(), "globex".into()));
        let _ = policy.exposure_headers(&policy.evaluate(&req));
        req.headers.pop();
        prop_assert_eq!(a, policy.eval_json(&policy.evaluate(&req)));
    }

    /// Generated policies, valid or not, never panic `load`, and valid ones evaluate anything.
    #[test]
    fn generated_policies_never_panic(
        flags in prop::collection::vec(flag_strategy(), 1..6),
        requests in prop::collection::vec(prop::collection::vec(("x-[a-c]", "[a-z0-9.:/ -]{0,12}"), 0..6), 1..10),
    ) {
        let p = generated_policy(flags);
        if let Ok(policy) = load(&p.to_string()) {
            for headers in requests {
                let req = Request {
                    path: "/v1/x?c=1".into(),
                    headers: headers.into_iter().map(|(n, v)| (n.into(), v.into())).collect(),
                    ..Request::default()
                };
                let outcome = policy.evaluate(&req);
                prop_assert!(outcome.decisions.len() <= policy.flags().len());
                let _ = policy.outcome_json(&outcome);
                let _ = policy.exposure_headers(&outcome);
            }
        }
    }

    /// Any text at all is either a policy or a list of errors, never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = load(&text);
    }
}

fn clause_strategy() -> impl Strategy<Value = Value> {
    let ops = prop::sample::select(vec![
        ("in", "x"),
        ("not_in", "x"),
        ("starts_with", "a"),
        ("ends_with", "z"),
        ("contains", "m"),
        ("matches", "^[a-f]+$"),
        ("matches", "(bad"),
        ("exists", ""),
        ("lt", "5"),
        ("gte", "2.5"),
        ("semver_gt", "1.2.3"),
        ("semver_eq", "nope"),
        ("cidr", "10.0.0.0/8"),
        ("cidr", "300.1.1.1"),
    ]);
    (
        prop::sample::select(vec!["a", "b", "c", "path", "host", "source_ip", "zz"]),
        ops,
        any::<bool>(),
    )
        .prop_map(|(attr, (op, v), negate)| {
            let values: Vec<Value> = if op == "exists" {
                vec![]
            } else {
                vec![json!(v)]
            };
            json!({"attribute": attr, "op": op, "values": values, "negate": negate})
        })
}

/// The frame the generated flags go in.
fn generated_policy(flags: Vec<Value>) -> Value {
    json!({
        "version": "gen",
        "context": {"a": {"header": "x-a"}, "b": {"cookie": "b"}, "c": {"query": "c"}},
        "consent": {"tenant_attribute": "a", "classes": {"k": {"mode": "opt_in"}},
                    "tenants": {"t1": {"k": {"state": "opt_in", "actor": "a", "at": "2026-01-01T00:00:00Z"}}}},
        "segments": {"s": [{"attribute": "b", "op": "exists"}]},
        "flags": flags,
    })
}

/// The property above only evaluates policies that load: the frame itself must be valid, or
/// it would pass without evaluating anything.
#[test]
fn the_generated_policy_frame_loads() {
    let flag = json!({
        "key": "f", "enabled": true, "unit": "a", "feature_class": "k",
        "on_consent_denied": {"reject": {"status": 403}},
        "variations": {"on": {"cluster": "c_on"}, "off": {}},
        "off_variation": "off", "rules": [{"when": [], "serve": "on"}], "default": {"serve": "off"}
    });
    if let Err(e) = load(&generated_policy(vec![flag]).to_string()) {
        panic!("the frame is refused: {e}");
    }
}

fn flag_strategy() -> impl Strategy<Value = Value> {
    (
        "[a-z]{1,6}",
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((prop::collection::vec(clause_strategy(), 0..3), 0u64..5, 0u64..5, any::<bool>()), 0..4),
    )
        .prop_map(|(key, enabled, consent, rules)| {
            let rules: Vec<Value> = rules
                .into_iter()
                .map(|(when, w1, w2, split)| {
                    if split {
                        json!({"when": when, "split": [{"variation": "on", "weight": w1}, {"variation": "off", "weight": w2}]})
                    } else {
                        json!({"when": when, "serve": "on"})
                    }
                })
                .collect();
            let mut flag = json!({
                "key": key, "enabled": enabled, "unit": "a",
                "variations": {"on": {"cluster": "c_on"}, "off": {}},
                "off_variation": "off", "rules": rules, "default": {"serve": "off"}
            });
            if consent {
                flag["feature_class"] = json!("k");
                flag["on_consent_denied"] = json!({"reject": {"status": 403}});
            }
            flag
        })
}

/// Over 100,000 random units a 5/95 split lands within ±0.5 points of 5%.
#[test]
fn five_percent_split_is_five_percent() {
    let policy = split_policy(&[("candidate", 5), ("control", 95)], Some("canary-2026"));
    let mut rng = proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::ChaCha,
    );
    let n = 100_000;
    let mut hits = 0;
    for _ in 0..n {
        let unit = format!("conv-{:016x}", rand_u64(&mut rng));
        if variation_of(&policy, &unit) == "candidate" {
            hits += 1;
        }
    }
    let share = hits as f64 * 100.0 / n as f64;
    assert!(
        (4.5..=5.5).contains(&share),
        "5% split landed at {share:.3}%"
    );
}

fn rand_u64(rng: &mut proptest::test_runner::TestRng) -> u64 {
    rng.random()
}
