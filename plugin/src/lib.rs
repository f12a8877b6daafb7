//! switchyard's Envoy filter: routes AI traffic by feature-flag policy.
//!
//! The root context compiles the policy (the plugin configuration) once, and again only when a
//! remote source ([`remote`]) delivers a new policy or consent document; each HTTP stream then
//! gets a filter that, on the request headers:
//!
//! 1. removes every client copy of a header switchyard owns (route header, exposure headers,
//!    anything `x-switchyard-*`), whether or not any flag applies;
//! 2. evaluates the policy on the request ([`request::build`]);
//! 3. either sends the consent reject as a local reply and stops, or sets the route header
//!    (clearing Envoy's route cache so `cluster_header` sees it), stamps the exposure headers,
//!    and continues;
//! 4. writes the outcome as filter state `wasm.switchyard_exposure` for the access log, and
//!    counts it ([`metrics`]); a reject's exposure event goes to `wasm.switchyard_event` now;
//!
//! and on the response headers writes a forwarded request's exposure event, completed with the
//! upstream's status, time and fallback header, and counts status class and latency per
//! exposed variation.
//!
//! The filter must never trap: a trap fails the request and, in Envoy, the whole VM. So host
//! calls go through `Result`-returning functions (`proxy_wasm::hostcalls`, or [`abi`] where
//! those would panic on client input), every failure is logged and skipped, and a panic hook
//! logs at critical level in case something was missed.

mod abi;
mod audit;
mod config;
mod consent_merge;
mod headers;
mod metrics;
mod node;
mod remote;
mod request;
mod scratch;
mod struct_config;
#[cfg(test)]
mod struct_encode;
mod words;

use std::rc::{Rc, Weak};
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use switchyard_policy::{CompiledPolicy, EventInfo, Outcome, UpstreamResult};

use crate::metrics::Metrics;
use crate::request::NameRole;

/// Filter state key; Envoy stores it as `wasm.switchyard_exposure`, so an access log reads
/// `%FILTER_STATE(wasm.switchyard_exposure:PLAIN)%`.
pub const FILTER_STATE_NAME: &str = "switchyard_exposure";

/// Filter state key of the exposure event (one JSON line per decided request, completed with
/// the upstream's status, time and fallback when the response arrives):
/// `%FILTER_STATE(wasm.switchyard_event:PLAIN)%`.
pub const EVENT_STATE_NAME: &str = "switchyard_event";

/// Request headers the exposure event carries (as `request_id` and `trace_id`).
const EVENT_REQUEST_ID: &str = "x-request-id";
const EVENT_TRACEPARENT: &str = "traceparent";

/// Envoy's response code details of a consent reject's local reply, as an access log shows
/// them with `%RESPONSE_CODE_DETAILS%`.
pub const REJECT_DETAILS: &str = "switchyard_consent_denied";

/// Headers switchyard owns even before any policy loaded (the engine's own prefix).
use switchyard_policy::OWNED_PREFIX;

proxy_wasm::main! {{
    // Installs the SDK's logger (and its panic hook, which we replace right after: the SDK's
    // hook unwraps the log call).
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("switchyard: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

pub(crate) fn log(level: LogLevel, message: &str) {
    // Nothing sensible to do if even logging fails.
    let _ = hostcalls::log(level, message);
}

pub(crate) fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

fn set_filter_state(name: &str, value: &str) {
    if let Err(status) = abi::set_property(name, value.as_bytes()) {
        warn(&format!(
            "switchyard: cannot set filter state {name} (status {})",
            status.0
        ));
    }
}

/// The host's clock in milliseconds since the Unix epoch.
fn now_ms() -> Option<u64> {
    let now = hostcalls::get_current_time().ok()?;
    let since = now.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// A fallback header's value that means yes: `1`, `true`, `yes` (any case).
fn is_truthy(value: &str) -> bool {
    ["1", "true", "yes"]
        .iter()
        .any(|t| value.trim().eq_ignore_ascii_case(t))
}

/// A compiled policy and its counters; shared by every stream of the root context.
struct Loaded {
    policy: CompiledPolicy,
    metrics: Metrics,
    /// A consent reject's response headers, serialized for the host once, not per reject.
    reject_headers: Vec<u8>,
}

/// The longest a worker keeps its counts before adding them to Envoy's counters (the tick
/// period when no remote source asks for a shorter one).
const FLUSH_PERIOD_MS: u64 = 1_000;

#[derive(Default)]
struct Root {
    loaded: Option<Rc<Loaded>>,
    /// Replaced policies that streams still hold: their counts are flushed on the tick too,
    /// so one long stream (an LLM response, a websocket) does not hold back every count of
    /// the streams that started before a swap.
    retired: Vec<Weak<Loaded>>,
    /// The remote sources the bootstrap policy names ([`remote`]), if any.
    remote: Option<remote::Remote>,
    /// Envoy accepted a tick period: counters are batched and flushed on ticks.
    ticking: bool,
}

impl Root {
    /// Swaps the live policy: new streams get it, running ones keep theirs (the old counters
    /// flush on every tick while they do, and when the last of them ends).
    fn install(&mut self, policy: CompiledPolicy) {
        if let Some(old) = &self.loaded {
            old.metrics.flush();
            self.retired.push(Rc::downgrade(old));
        }
        let metrics = Metrics::define(&policy, self.ticking);
        self.loaded = Some(Rc::new(Loaded {
            policy,
            metrics,
            reject_headers: headers::serialize_map(&[("content-type", "application/json")]),
        }));
    }

    /// Ticks for remote polling and for flushing counters, whichever needs it sooner.
    fn start_ticking(&mut self) {
        let period = self.remote.as_ref().map_or(FLUSH_PERIOD_MS, |remote| {
            remote.tick_ms().min(FLUSH_PERIOD_MS)
        });
        self.ticking = match hostcalls::set_tick_period(Duration::from_millis(period)) {
            Ok(()) => true,
            Err(status) => {
                warn(&format!(
                    "switchyard: cannot set the tick period ({status:?}); counters are added per \
                     request and remote sources are not polled"
                ));
                false
            }
        };
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(remote) = self.remote.as_mut() else {
            return;
        };
        let live = self.loaded.as_ref().map(|loaded| &loaded.policy);
        if let Some(policy) = remote.on_response(token_id, num_headers, body_size, live) {
            self.install(policy);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, configuration_size: usize) -> bool {
        // The node metadata's environment and pseudonym key apply to this policy and to every
        // policy fetched later ([`node`]).
        let loaded = node::load_options().and_then(|options| {
            let text = config::read(configuration_size)?;
            let policy = config::compile_with(&text, &options)?;
            Ok((text, options, policy))
        });
        match loaded {
            Ok((text, options, policy)) => {
                if let Some(environment) = &options.environment {
                    log(
                        LogLevel::Info,
                        &format!("switchyard: node declares environment {environment:?}"),
                    );
                }
                let mut remote = remote::Remote::start(&text, &policy, options.clone());
                // Workers already serving fetched documents keep serving them: the new
                // configuration only takes them over, or is refused if it cannot. Before a
                // source's first document, its part is served safe (`until_fetched`).
                let joined = match remote.as_mut() {
                    Some(remote) => remote.join_live(policy, text),
                    None => Ok((policy, text)),
                };
                let (policy, text) = match joined {
                    Ok(joined) => joined,
                    Err(why) => {
                        log(
                            LogLevel::Error,
                            &format!("switchyard: policy rejected: {why}"),
                        );
                        metrics::count_load_failure();
                        return false;
                    }
                };
                audit::configured(&text, &policy, &options);
                self.remote = remote;
                self.start_ticking();
                log(
                    LogLevel::Info,
                    &format!(
                        "switchyard: policy {} loaded ({} flags)",
                        policy.version(),
                        policy.flags().len()
                    ),
                );
                self.install(policy);
                true
            }
            Err(problems) => {
                // A refused configuration leaves any earlier policy in place: Envoy keeps
                // serving with the old configuration, and nothing is half-applied.
                for problem in &problems {
                    log(
                        LogLevel::Error,
                        &format!("switchyard: policy rejected: {problem}"),
                    );
                }
                metrics::count_load_failure();
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(loaded) = &self.loaded {
            loaded.metrics.flush();
        }
        self.retired.retain(|old| match old.upgrade() {
            Some(old) => {
                old.metrics.flush();
                true
            }
            None => false, // its last stream ended and flushed it (`Metrics::drop`)
        });
        let Some(remote) = self.remote.as_mut() else {
            return;
        };
        let live = self.loaded.as_ref().map(|loaded| &loaded.policy);
        if let Some(policy) = remote.on_tick(live) {
            self.install(policy);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            loaded: self.loaded.clone(),
            response_headers: Vec::new(),
            pending: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP stream.
struct Filter {
    loaded: Option<Rc<Loaded>>,
    /// Exposure headers to copy onto the response (`settings.response_headers`).
    response_headers: Vec<(String, String)>,
    /// A decided request that went upstream: what to complete when the response arrives.
    pending: Option<Pending>,
}

/// The request-time half of an exposure event, finished with what actually ran.
struct Pending {
    /// The event rendered with `"upstream": null` (`None` when `settings.exposure_event` is
    /// off: the guardrail metrics below are still counted).
    event: Option<String>,
    started_ms: Option<u64>,
    /// (flag index, variation index) of every decision that served a variation.
    exposed: Vec<(usize, usize)>,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let map = headers::request_header_bytes();
        let map = map.as_deref().unwrap_or_default();
        let Some(loaded) = self.loaded.clone() else {
            // No policy (Envoy does not start streams on a refused configuration, but be
            // safe): still never let a client's switchyard headers through.
            headers::remove_owned(map, |name| name.starts_with(OWNED_PREFIX.as_bytes()));
            return Action::Continue;
        };
        let policy = &loaded.policy;
        let settings = policy.settings();
        // The engine reads only the policy's headers; the event also wants these two.
        let event_headers: &[&str] = if settings.exposure_event {
            &[EVENT_REQUEST_ID, EVENT_TRACEPARENT]
        } else {
            &[]
        };
        let mut entries = headers::entries(map);
        let built = request::build(
            entries.by_ref(),
            |name| {
                if let Some(read) = policy.read_header_name(name) {
                    NameRole::Read(read)
                } else if policy.is_owned_header(name) {
                    NameRole::Owned
                } else if let Some(event) = event_headers.iter().find(|h| h.as_bytes() == name) {
                    NameRole::Read(event)
                } else {
                    NameRole::Other
                }
            },
            scratch::headers(),
        );
        // Client copies of owned headers were all seen only if the map was read whole.
        let write = if entries.whole() {
            headers::OwnedWrite::Add
        } else {
            headers::OwnedWrite::Replace
        };
        if built.owned_seen {
            headers::remove_owned(map, |name| policy.is_owned_header(name));
        }
        let mut request = built.request;
        // A property lookup costs a host call (and a VM entry to hand the value back): only
        // when a flag in scope for this request tests `source_ip`.
        if policy.needs_source_ip(&request) {
            match hostcalls::get_property(vec!["source", "address"]) {
                Ok(address) => {
                    let ip = address
                        .as_deref()
                        .map(request::source_ip)
                        .unwrap_or_default();
                    request.source_ip = ip.to_string().into();
                }
                Err(status) => warn(&format!(
                    "switchyard: cannot read source.address ({status:?})"
                )),
            }
        }
        let outcome = policy.evaluate_into(&request, scratch::decisions());
        let mut text = scratch::text_buffer();
        let action = self.act(&loaded, &request, &outcome, write, &mut text);
        scratch::keep_text_buffer(text);
        scratch::keep_decisions(outcome.decisions);
        scratch::keep_headers(request.headers);
        action
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.response_headers {
            headers::set_response_header(name, value);
        }
        if let (Some(pending), Some(loaded)) = (self.pending.take(), self.loaded.as_ref()) {
            let status = headers::response_header(":status").and_then(|s| s.parse::<u16>().ok());
            let duration_ms = pending
                .started_ms
                .zip(now_ms())
                .map(|(start, end)| end.saturating_sub(start));
            if let Some(mut event) = pending.event {
                let fallback_used = loaded
                    .policy
                    .settings()
                    .fallback_header
                    .as_deref()
                    .map(|name| headers::response_header(name).is_some_and(|v| is_truthy(&v)));
                let upstream = UpstreamResult {
                    status,
                    duration_ms,
                    fallback_used,
                };
                switchyard_policy::add_upstream(&mut event, &upstream);
                set_filter_state(EVENT_STATE_NAME, &event);
                scratch::keep_event_buffer(event);
            }
            loaded
                .metrics
                .count_response(&pending.exposed, status, duration_ms);
            scratch::keep_exposed_list(pending.exposed);
        }
        Action::Continue
    }
}

impl Filter {
    /// What the filter does with a decided request: counts it, writes the evidence, and sends
    /// the consent reject or sets the route and exposure headers. `text` is the worker's
    /// buffer ([`scratch`]) that the outcome JSON and then the exposure value are rendered into.
    fn act(
        &mut self,
        loaded: &Loaded,
        request: &switchyard_policy::Request<'_>,
        outcome: &Outcome<'_>,
        write: headers::OwnedWrite,
        text: &mut String,
    ) -> Action {
        let policy = &loaded.policy;
        let settings = policy.settings();
        loaded.metrics.count(outcome);
        // Written for rejects too, so the access log shows why a request never went upstream.
        if settings.exposure_state {
            policy.outcome_json_into(outcome, text);
            set_filter_state(FILTER_STATE_NAME, text);
        }
        // The response is read, and the clock twice, only for the event or the upstream
        // metrics: three host calls and a response header map lookup (bench/README.md).
        let follow_upstream = settings.exposure_event || settings.upstream_metrics;
        if follow_upstream && !outcome.decisions.is_empty() {
            let started_ms = now_ms();
            let event = settings.exposure_event.then(|| {
                let mut event = scratch::event_buffer();
                policy.exposure_event_into(
                    outcome,
                    &EventInfo {
                        timestamp_ms: started_ms.unwrap_or(0),
                        request_id: request.header(EVENT_REQUEST_ID),
                        traceparent: request.header(EVENT_TRACEPARENT),
                        upstream: None,
                    },
                    &mut event,
                );
                event
            });
            if outcome.reject.is_some() {
                // Nothing will run upstream: the event is complete now.
                if let Some(event) = event {
                    set_filter_state(EVENT_STATE_NAME, &event);
                    scratch::keep_event_buffer(event);
                }
            } else {
                // Written once, when the response arrives with what actually ran: a filter
                // state write is one of the dearest host calls (bench/README.md). A stream the
                // client resets before any response headers gets no event; its decision is still
                // in `switchyard_exposure`.
                self.pending = Some(Pending {
                    event,
                    started_ms,
                    exposed: {
                        let mut exposed = scratch::exposed_list();
                        exposed.extend(
                            outcome
                                .decisions
                                .iter()
                                .filter_map(|d| Some((d.flag_index, d.variation_index?))),
                        );
                        exposed
                    },
                });
            }
        }

        if let Some(reject) = &outcome.reject {
            let body = policy.reject_body(reject);
            // The details show in the access log (%RESPONSE_CODE_DETAILS%): the proof that this
            // 403 is switchyard's consent check, not some other local reply.
            let sent = abi::send_local_response(
                u32::from(reject.status),
                REJECT_DETAILS,
                &loaded.reject_headers,
                body.as_bytes(),
            );
            if let Err(status) = sent {
                // Without the local reply the request must still not reach an AI route.
                log(
                    LogLevel::Error,
                    &format!(
                        "switchyard: cannot send the consent reject (status {})",
                        status.0
                    ),
                );
            }
            return Action::Pause;
        }

        if let Some(cluster) = outcome.cluster {
            // The route was chosen before this filter ran. Envoy clears its route cache when a
            // module of ABI 0.2.1 (this SDK's, pinned by host-tests' `exports.rs`) changes
            // request headers, so the route's `cluster_header` reads this header. Modules of
            // a later ABI would have to call the `clear_route_cache` foreign function, a host
            // call that costs Envoy about 6,000 instructions per request (bench/README.md).
            headers::set_owned_request_header(write, &settings.route_header, cluster);
        }
        let copy_to_response = settings.response_headers;
        let mut response_headers = Vec::new();
        policy.each_exposure_header(outcome, text, |name, value| {
            headers::set_owned_request_header(write, name, value);
            if copy_to_response {
                response_headers.push((name.to_string(), value.to_string()));
            }
        });
        self.response_headers = response_headers;
        Action::Continue
    }
}
