//! Counters, defined once per policy load from the policy's own names, never from request
//! values (a client must not be able to create stats).
//!
//! | counter | counts |
//! | --- | --- |
//! | `switchyard.decisions.flag.<F>.variation.<V>.reason.<R>` | each decision (`<V>` is `none` for a consent reject) |
//! | `switchyard.consent_denied.flag.<F>` | decisions with reason `CONSENT_DENIED` (served fallback or reject) |
//! | `switchyard.rejects.flag.<F>` | local replies sent for a consent reject |
//! | `switchyard.policy.load_failures` | policies refused by `on_configure` |
//! | `switchyard.upstream.flag.<F>.variation.<V>.class.<C>` | responses to requests this variation was exposed on, by status class `2xx` `3xx` `4xx` `5xx` `other` |
//! | `switchyard.upstream_latency.flag.<F>.variation.<V>` (histogram) | milliseconds from the request reaching the filter to the response headers |
//!
//! Flag and variation names are sanitized for stat names: any character outside
//! `[A-Za-z0-9_-]` becomes `_` (a `.` would split the name into more stat segments). Two names
//! that sanitize alike share one counter; so would a variation literally named `none` with
//! the consent-reject counter.
//!
//! Envoy prefixes custom Wasm stats with `wasmcustom.`. These `stats_config.stats_tags` turn
//! the names into one `switchyard.decisions` stat with `flag`, `variation` and `reason`
//! labels (Envoy removes each regex's first capture group from the name and uses the second
//! as the tag value; every regex is matched against the full original name):
//!
//! ```yaml
//! stats_config:
//!   stats_tags:
//!   - tag_name: flag
//!     regex: '^wasmcustom\.switchyard\.(?:decisions|consent_denied|rejects|upstream|upstream_latency)(\.flag\.([A-Za-z0-9_-]+))'
//!   - tag_name: variation
//!     regex: '^wasmcustom\.switchyard\.(?:decisions|upstream|upstream_latency)\.flag\.[A-Za-z0-9_-]+(\.variation\.([A-Za-z0-9_-]+))'
//!   - tag_name: reason
//!     regex: '^wasmcustom\.switchyard\.decisions\.flag\.[A-Za-z0-9_-]+\.variation\.[A-Za-z0-9_-]+(\.reason\.([A-Z_]+))$'
//!   - tag_name: status_class
//!     regex: '^wasmcustom\.switchyard\.upstream\.flag\.[A-Za-z0-9_-]+\.variation\.[A-Za-z0-9_-]+(\.class\.([0-9a-z]+))$'
//! ```
//!
//! **Counters are batched.** A request adds to the filter's own tallies; each worker adds them
//! to Envoy's counters on its tick, at least once a second ([`Metrics::flush`]), when a policy
//! is replaced, and when the last stream of a replaced policy ends. A counter host call costs
//! Envoy about a thousand instructions (bench/README.md), and the large policy's requests
//! would make forty. So a count reaches `/stats` within about a second; counts of the last
//! second are lost only when the VM itself goes away. Histograms take one value per call and
//! are recorded as each response arrives. If Envoy refuses a tick period, counters are added
//! per request as before.
//!
//! A policy with very many flags × variations would define very many stats (each costs Envoy
//! memory on every worker); beyond [`MAX_DECISION_COUNTERS`] the per-variation decision
//! counters are not defined (a warning says so) and only the per-flag counters are kept.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use switchyard_policy::{CompiledPolicy, Outcome, Reason};

/// The most `switchyard.decisions.*` counters one policy may define.
pub const MAX_DECISION_COUNTERS: usize = 20_000;

pub const LOAD_FAILURES: &str = "switchyard.policy.load_failures";

/// A counter's index in [`Metrics::tallies`].
#[derive(Debug, Clone, Copy)]
struct Counter(usize);

/// Counters by (flag index, variation index, reason), built when the policy loads.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `[flag][variation][reason index]`.
    decisions: Vec<Vec<[Option<Counter>; REASONS]>>,
    /// `[flag]`: the `variation.none.reason.CONSENT_DENIED` counter.
    rejected_decisions: Vec<Option<Counter>>,
    consent_denied: Vec<Option<Counter>>,
    rejects: Vec<Option<Counter>>,
    /// `[flag][variation][status class]`.
    upstream: Vec<Vec<[Option<Counter>; CLASSES]>>,
    /// `[flag][variation]`: latency histograms (host metric ids).
    latency: Vec<Vec<Option<u32>>>,
    /// Each counter's host metric id, and what it has counted since the last flush.
    tallies: Vec<(u32, Cell<u64>)>,
    /// Add to Envoy's counter on every count: the root context has no tick to flush on.
    unbatched: bool,
}

/// Response status classes, in counter order.
const CLASS_NAMES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "other"];
const CLASSES: usize = CLASS_NAMES.len();

fn class_index(status: Option<u16>) -> usize {
    match status {
        Some(200..=299) => 0,
        Some(300..=399) => 1,
        Some(400..=499) => 2,
        Some(500..=599) => 3,
        _ => 4,
    }
}

const REASONS: usize = Reason::ALL.len();

fn reason_index(reason: Reason) -> usize {
    match reason {
        Reason::TargetingMatch => 0,
        Reason::Split => 1,
        Reason::Default => 2,
        Reason::Disabled => 3,
        Reason::ConsentDenied => 4,
        Reason::Error => 5,
    }
}

/// `name` with every character outside `[A-Za-z0-9_-]` replaced by `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every counter name a policy defines, with where it goes: the single source of the naming
/// scheme, used by [`Metrics::define`].
fn names(policy: &CompiledPolicy) -> Vec<(Slot, String)> {
    let flags = policy.flags();
    // Per variation: a counter per reason and, unless `settings.upstream_metrics` is off, per
    // status class, and a latency histogram.
    let upstream = policy.settings().upstream_metrics;
    let per_variation_stats = REASONS + if upstream { CLASSES + 1 } else { 0 };
    let decision_count: usize = flags
        .iter()
        .map(|f| f.variations.len() * per_variation_stats)
        .sum();
    let per_variation = decision_count <= MAX_DECISION_COUNTERS;
    if !per_variation {
        crate::warn(&format!(
            "switchyard: policy needs {decision_count} per-variation stats; over \
             {MAX_DECISION_COUNTERS}, so switchyard.decisions.* and switchyard.upstream*.* \
             are not defined"
        ));
    }
    let mut out = Vec::new();
    for (f, flag) in flags.iter().enumerate() {
        let key = sanitize(&flag.key);
        if per_variation {
            for (v, variation) in flag.variations.iter().enumerate() {
                let variation = sanitize(variation);
                for reason in Reason::ALL {
                    out.push((
                        Slot::Decision(f, v, reason_index(reason)),
                        format!(
                            "switchyard.decisions.flag.{key}.variation.{variation}.reason.{}",
                            reason.as_str()
                        ),
                    ));
                }
            }
            for (v, variation) in flag.variations.iter().enumerate().filter(|_| upstream) {
                let variation = sanitize(variation);
                for (c, class) in CLASS_NAMES.iter().enumerate() {
                    out.push((
                        Slot::Upstream(f, v, c),
                        format!(
                            "switchyard.upstream.flag.{key}.variation.{variation}.class.{class}"
                        ),
                    ));
                }
                out.push((
                    Slot::Latency(f, v),
                    format!("switchyard.upstream_latency.flag.{key}.variation.{variation}"),
                ));
            }
            out.push((
                Slot::RejectedDecision(f),
                format!(
                    "switchyard.decisions.flag.{key}.variation.none.reason.{}",
                    Reason::ConsentDenied.as_str()
                ),
            ));
        }
        out.push((
            Slot::ConsentDenied(f),
            format!("switchyard.consent_denied.flag.{key}"),
        ));
        out.push((Slot::Reject(f), format!("switchyard.rejects.flag.{key}")));
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Decision(usize, usize, usize),
    RejectedDecision(usize),
    ConsentDenied(usize),
    Reject(usize),
    Upstream(usize, usize, usize),
    Latency(usize, usize),
}

impl Metrics {
    /// Defines every counter for this policy (plus the load-failure counter). `batched`: the
    /// root context ticks and calls [`Metrics::flush`] at least once a second.
    pub fn define(policy: &CompiledPolicy, batched: bool) -> Metrics {
        let _ = counter(LOAD_FAILURES);
        let flags = policy.flags();
        let mut metrics = Metrics {
            decisions: flags
                .iter()
                .map(|f| vec![[None; REASONS]; f.variations.len()])
                .collect(),
            rejected_decisions: vec![None; flags.len()],
            consent_denied: vec![None; flags.len()],
            rejects: vec![None; flags.len()],
            upstream: flags
                .iter()
                .map(|f| vec![[None; CLASSES]; f.variations.len()])
                .collect(),
            latency: flags
                .iter()
                .map(|f| vec![None; f.variations.len()])
                .collect(),
            tallies: Vec::new(),
            unbatched: !batched,
        };
        for (slot, name) in names(policy) {
            if let Slot::Latency(f, v) = slot {
                let id = define(MetricType::Histogram, &name);
                if let Some(target) = metrics.latency.get_mut(f).and_then(|vs| vs.get_mut(v)) {
                    *target = id;
                }
                continue;
            }
            let Some(id) = counter(&name) else {
                continue;
            };
            let index = Counter(metrics.tallies.len());
            metrics.tallies.push((id, Cell::new(0)));
            let target = match slot {
                Slot::Decision(f, v, r) => metrics
                    .decisions
                    .get_mut(f)
                    .and_then(|vs| vs.get_mut(v))
                    .and_then(|rs| rs.get_mut(r)),
                Slot::RejectedDecision(f) => metrics.rejected_decisions.get_mut(f),
                Slot::ConsentDenied(f) => metrics.consent_denied.get_mut(f),
                Slot::Reject(f) => metrics.rejects.get_mut(f),
                Slot::Upstream(f, v, c) => metrics
                    .upstream
                    .get_mut(f)
                    .and_then(|vs| vs.get_mut(v))
                    .and_then(|cs| cs.get_mut(c)),
                Slot::Latency(..) => None, // a histogram, defined above
            };
            if let Some(target) = target {
                *target = Some(index);
            }
        }
        metrics
    }

    fn add(&self, counter: Option<Counter>) {
        let Some((id, tally)) = counter.and_then(|Counter(i)| self.tallies.get(i)) else {
            return;
        };
        if self.unbatched {
            increment(Some(*id));
        } else {
            tally.set(tally.get().saturating_add(1));
        }
    }

    /// Adds what was counted since the last flush to Envoy's counters: one host call per
    /// counter that moved.
    pub fn flush(&self) {
        for (id, tally) in &self.tallies {
            let n = tally.take();
            if n > 0 {
                // On failure the counts are lost rather than retried: a host that refuses
                // an increment will refuse the next one too.
                let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// Counts one request's outcome.
    pub fn count(&self, outcome: &Outcome<'_>) {
        for decision in &outcome.decisions {
            let f = decision.flag_index;
            let id = match decision.variation_index {
                Some(v) => self
                    .decisions
                    .get(f)
                    .and_then(|vs| vs.get(v))
                    .and_then(|rs| rs.get(reason_index(decision.reason)).copied().flatten()),
                None if decision.reason == Reason::ConsentDenied => {
                    self.rejected_decisions.get(f).copied().flatten()
                }
                None => None,
            };
            self.add(id);
            if decision.reason == Reason::ConsentDenied {
                self.add(self.consent_denied.get(f).copied().flatten());
            }
        }
        if let Some(reject) = &outcome.reject {
            self.add(self.rejects.get(reject.flag_index).copied().flatten());
        }
    }

    /// Counts the response to a request on which these (flag, variation) pairs were exposed:
    /// its status class and its latency, for guardrails per variation.
    pub fn count_response(&self, exposed: &[(usize, usize)], status: Option<u16>, ms: Option<u64>) {
        let class = class_index(status);
        for &(f, v) in exposed {
            self.add(
                self.upstream
                    .get(f)
                    .and_then(|vs| vs.get(v))
                    .and_then(|cs| cs.get(class).copied().flatten()),
            );
            if let (Some(ms), Some(id)) = (
                ms,
                self.latency
                    .get(f)
                    .and_then(|vs| vs.get(v))
                    .copied()
                    .flatten(),
            ) {
                let _ = hostcalls::record_metric(id, ms);
            }
        }
    }
}

/// Counts a refused policy (defining the counter first: there may be no earlier policy).
pub fn count_load_failure() {
    increment(counter(LOAD_FAILURES));
}

fn counter(name: &str) -> Option<u32> {
    define(MetricType::Counter, name)
}

thread_local! {
    /// The ids this VM got, by kind and name. Envoy hands out a new id, and a new entry in
    /// tables it never shrinks, for every definition, even of a name it already has: without
    /// this, every policy swap (each changed consent document) would grow them.
    /// Keyed by the kind's digit and the name (the map type the engine already uses).
    static DEFINED: RefCell<HashMap<String, usize>> = RefCell::new(HashMap::new());
}

/// Defines a metric once per VM, logging (not failing) when the host refuses.
pub(crate) fn define(kind: MetricType, name: &str) -> Option<u32> {
    let key = format!("{}{name}", kind as u32);
    if let Some(id) = DEFINED.with(|d| d.borrow().get(&key).copied()) {
        return u32::try_from(id).ok();
    }
    match hostcalls::define_metric(kind, name) {
        Ok(id) => {
            DEFINED.with(|d| d.borrow_mut().insert(key, id as usize));
            Some(id)
        }
        Err(status) => {
            crate::warn(&format!(
                "switchyard: cannot define metric {name} ({status:?})"
            ));
            None
        }
    }
}

/// Adds one to a counter in Envoy now (for counters outside the per-request path).
pub(crate) fn increment(id: Option<u32>) {
    if let Some(id) = id {
        // A failed increment loses one count; not worth a log line per request.
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Drop for Metrics {
    /// A replaced policy's last stream has ended: its counts still go to Envoy.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(
            sanitize("support.answer model/route"),
            "support_answer_model_route"
        );
        assert_eq!(sanitize("a-b_C9"), "a-b_C9");
        assert_eq!(sanitize("é"), "_");
    }

    #[test]
    fn status_classes() {
        assert_eq!(class_index(Some(200)), 0);
        assert_eq!(class_index(Some(304)), 1);
        assert_eq!(class_index(Some(429)), 2);
        assert_eq!(class_index(Some(503)), 3);
        assert_eq!(class_index(Some(101)), 4);
        assert_eq!(class_index(None), 4);
    }

    #[test]
    fn reason_indices_follow_reason_all() {
        for (i, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(reason_index(reason), i);
        }
    }
}
