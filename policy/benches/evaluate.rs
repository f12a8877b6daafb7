//! Engine benchmarks: ns per request (request in, decisions out; and with the rendering the
//! filter does), and the time to load and compile a policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use switchyard_policy::{load, Request};

mod large_policy;

fn requests(n: usize) -> Vec<Request<'static>> {
    (0..n)
        .map(|i| Request {
            method: "POST".into(),
            path: "/v1/chat/completions?stream=false".into(),
            host: "api.example".into(),
            source_ip: "10.1.2.3".into(),
            headers: large_policy::request_headers(i)
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let example_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/support-copilot/policy.json"
    ))
    .unwrap_or_default();
    let large_text = large_policy::large_policy();
    let example = load(&example_text).unwrap_or_else(|e| panic!("{e}"));
    let large = load(&large_text).unwrap_or_else(|e| panic!("{e}"));
    let reqs = requests(1024);

    let mut g = c.benchmark_group("evaluate");
    for (name, policy) in [("example", &example), ("large", &large)] {
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(policy.evaluate(black_box(&reqs[i])).decisions.len())
            })
        });
        let mut i = 0usize;
        g.bench_function(format!("{name}+render"), |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                let outcome = policy.evaluate(black_box(&reqs[i]));
                let headers = policy.exposure_headers(&outcome);
                let state = policy.outcome_json(&outcome);
                black_box((headers.len(), state.len()))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("load");
    g.sample_size(20);
    g.bench_function("example", |b| {
        b.iter(|| load(black_box(&example_text)).is_ok())
    });
    g.bench_function("large", |b| b.iter(|| load(black_box(&large_text)).is_ok()));
    g.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
