//! Where the engine's per-request instructions go, natively (bench/instructions.sh, second
//! table): the same request mix through the switchyard_policy calls the filter makes per
//! request, each behind its own non-inlined function so callgrind reports them separately.
//!
//!     native POLICY MIX_FILE N
//!
//! Built with the release profile's opt-level but with symbols and without LTO (see
//! instructions.sh); counted with `callgrind --toggle-collect='*native_measured*'` (N measured
//! plus 200 warm-up calls of the same function: the script divides by N + 200).

use std::process::ExitCode;

use switchyard_policy::{CompiledPolicy, EventInfo, Outcome, Request};

pub const WARMUP: usize = 200;

#[inline(never)]
fn native_measured(policy: &CompiledPolicy, requests: &[Request], n: usize) -> usize {
    let mut bytes = 0;
    for i in 0..n {
        let request = &requests[i % requests.len()];
        let outcome = step_evaluate(policy, request);
        bytes += step_outcome_json(policy, &outcome).len();
        bytes += step_exposure_event(policy, &outcome, request).len();
        bytes += step_exposure_headers(policy, &outcome).len();
    }
    bytes
}

/// `CompiledPolicy::evaluate`: the decision itself.
#[inline(never)]
fn step_evaluate<'p>(policy: &'p CompiledPolicy, request: &Request) -> Outcome<'p> {
    policy.evaluate(request)
}

/// The outcome JSON the filter stores as filter state `switchyard_exposure`.
#[inline(never)]
fn step_outcome_json(policy: &CompiledPolicy, outcome: &Outcome<'_>) -> String {
    policy.outcome_json(outcome)
}

/// The exposure event the filter stores as filter state (and completes at response time).
#[inline(never)]
fn step_exposure_event(policy: &CompiledPolicy, outcome: &Outcome<'_>, request: &Request) -> String {
    policy.exposure_event(
        outcome,
        &EventInfo {
            timestamp_ms: 1_795_000_000_000,
            request_id: request.header("x-request-id"),
            traceparent: request.header("traceparent"),
            upstream: None,
        },
    )
}

/// The `x-switchyard-exposure` / version headers the filter adds upstream.
#[inline(never)]
fn step_exposure_headers<'p>(
    policy: &'p CompiledPolicy,
    outcome: &Outcome<'_>,
) -> Vec<(&'p str, std::borrow::Cow<'p, str>)> {
    policy.exposure_headers(outcome)
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: native POLICY MIX_FILE N".into());
    }
    let text = std::fs::read_to_string(&args[1]).map_err(|e| format!("{}: {e}", args[1]))?;
    let policy = switchyard_policy::load(&text).map_err(|e| format!("{}: {e:?}", args[1]))?;
    let mix = std::fs::read_to_string(&args[2]).map_err(|e| format!("{}: {e}", args[2]))?;
    let n: usize = args[3].parse().map_err(|e| format!("N: {e}"))?;
    let requests: Vec<Request> = mix
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let mut request = Request {
                method: "POST".into(),
                path: "/v1/chat/completions".into(),
                host: "api.example".into(),
                source_ip: "10.1.2.3".into(),
                ..Request::default()
            };
            for pair in fields.chunks(2) {
                if let [name, value] = pair {
                    request.headers.push((name.to_string().into(), value.to_string().into()));
                }
            }
            request
        })
        .collect();
    if requests.is_empty() {
        return Err("empty request mix".into());
    }
    native_measured(&policy, &requests, WARMUP);
    let bytes = native_measured(&policy, &requests, n);
    println!("requests {n} output bytes {bytes}");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("native: {e}");
            ExitCode::FAILURE
        }
    }
}
