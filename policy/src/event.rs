//! The exposure event: one JSON line per decided request, for Envoy's access log (through the
//! filter state) and for anything that joins outcomes to the variation that served them.
//!
//! Field names follow OpenTelemetry's feature-flag semantic conventions where one fits:
//! `feature_flag.key`, `feature_flag.result.variant`, `feature_flag.result.reason` (lower-case,
//! as OpenTelemetry spells reasons), `feature_flag.context.id` (the pseudonymous unit id),
//! `feature_flag.version` (the policy version), `feature_flag.provider.name` (`switchyard`).
//! `switchyard.policy.hash` is the content hash of the document in force (the audit line's
//! hash): fetched consent records change it and not the version.

use crate::compile::CompiledPolicy;
use crate::digits::{push_padded, push_u64};
use crate::outcome::Outcome;

/// What the host adds to an event.
#[derive(Debug, Clone, Default)]
pub struct EventInfo<'a> {
    /// Milliseconds since the Unix epoch, rendered as RFC 3339.
    pub timestamp_ms: u64,
    /// `x-request-id`.
    pub request_id: Option<&'a str>,
    /// The `traceparent` header; its trace id is extracted if it is well-formed.
    pub traceparent: Option<&'a str>,
    /// What actually ran, once the response is known.
    pub upstream: Option<UpstreamResult>,
}

/// What the upstream did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamResult {
    pub status: Option<u16>,
    /// From the request reaching the filter to the response headers.
    pub duration_ms: Option<u64>,
    /// The policy's `fallback_header` on the response, if the policy names one.
    pub fallback_used: Option<bool>,
}

/// OpenTelemetry spells reasons in lower case. (The event's writer has them in its own table of
/// pieces, `json_out::event_reason`, checked against this.)
#[cfg(test)]
pub(crate) fn otel_reason(reason: crate::outcome::Reason) -> &'static str {
    use crate::outcome::Reason;
    match reason {
        Reason::TargetingMatch => "targeting_match",
        Reason::Split => "split",
        Reason::Default => "default",
        Reason::Disabled => "disabled",
        Reason::ConsentDenied => "consent_denied",
        Reason::Error => "error",
    }
}

impl CompiledPolicy {
    /// The exposure event as one JSON line (no trailing newline), `upstream` null until
    /// [`add_upstream`] completes it.
    pub fn exposure_event(&self, outcome: &Outcome<'_>, info: &EventInfo<'_>) -> String {
        let mut event = String::new();
        self.exposure_event_into(outcome, info, &mut event);
        event
    }

    /// [`Self::exposure_event`], written into `buffer` (cleared first): the filter takes the
    /// buffer from the ones it keeps between requests, and gives it back once the event is
    /// written.
    pub fn exposure_event_into(
        &self,
        outcome: &Outcome<'_>,
        info: &EventInfo<'_>,
        buffer: &mut String,
    ) {
        buffer.clear();
        buffer.reserve(256 + 384 * outcome.decisions.len());
        self.append_event(outcome, info, buffer);
        if let Some(upstream) = &info.upstream {
            add_upstream(buffer, upstream);
        }
    }
}

/// Fills in `upstream` of an event [`CompiledPolicy::exposure_event`] rendered without one:
/// what actually ran, once the response is known. The filter renders the event at request time
/// and completes it here, without keeping the outcome alive, in the event's own buffer: no
/// copy while the buffer has room (a large event grows it once; sizing every event exactly
/// cost more than that, `bench/README.md`). An event that does not end in `"upstream":null`
/// is left as it is.
pub fn add_upstream(event: &mut String, upstream: &UpstreamResult) {
    const OPEN: &str = ",\"upstream\":null}";
    if !event.ends_with(OPEN) {
        return;
    }
    event.truncate(event.len() - OPEN.len());
    event.push_str(",\"upstream\":{\"status\":");
    match upstream.status {
        Some(s) => push_u64(event, u64::from(s)),
        None => event.push_str("null"),
    }
    event.push_str(",\"duration_ms\":");
    match upstream.duration_ms {
        Some(d) => push_u64(event, d),
        None => event.push_str("null"),
    }
    event.push_str(",\"fallback_used\":");
    event.push_str(match upstream.fallback_used {
        Some(true) => "true",
        Some(false) => "false",
        None => "null",
    });
    event.push_str("}}");
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if it is valid as
/// Trace Context defines it: lower-case hex only, neither id all zeros, version `ff` refused,
/// and version `00` with exactly these four fields (a later version may add fields after
/// them). Anything else gives no trace id: events are joined to traces by exact match, and a
/// tracer ignores such a header and starts a trace of its own (its ids are lower case).
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let not_zero = |s: &str| s.bytes().any(|b| b != b'0');
    (hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace, 32)
        && hex(span, 16)
        && hex(flags, 2)
        && not_zero(trace)
        && not_zero(span))
    .then_some(trace)
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (civil-from-days, proleptic
/// Gregorian calendar).
#[cfg(test)]
pub fn rfc3339_millis(ms: u64) -> String {
    let mut s = String::with_capacity(24);
    push_rfc3339_millis(&mut s, ms);
    s
}

/// Appends `ms` (milliseconds since the epoch) as `YYYY-MM-DDTHH:MM:SS.mmmZ` (civil-from-days,
/// proleptic Gregorian calendar).
pub(crate) fn push_rfc3339_millis(s: &mut String, ms: u64) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // `year` is at least 1970 here (ms is unsigned), so the casts lose nothing. The year is
    // written on its own (it may have more than 4 digits); the rest has a fixed layout.
    push_padded(s, year.unsigned_abs(), 4);
    let mut rest = *b"-00-00T00:00:00.000Z";
    put_digits(&mut rest[1..3], month.unsigned_abs());
    put_digits(&mut rest[4..6], day.unsigned_abs());
    put_digits(&mut rest[7..9], rem / 3600);
    put_digits(&mut rest[10..12], (rem % 3600) / 60);
    put_digits(&mut rest[13..15], rem % 60);
    put_digits(&mut rest[16..19], ms % 1000);
    if let Ok(rest) = std::str::from_utf8(&rest) {
        s.push_str(rest);
    }
}

/// Writes the last `slot.len()` decimal digits of `n` into `slot`.
fn put_digits(slot: &mut [u8], mut n: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The serde rendering the fast writer (`json_out`) must reproduce byte for byte.
#[cfg(test)]
pub(crate) mod reference {
    use super::*;
    use crate::render::reference::{Attributes, RuleJson};
    use serde::Serialize;

    #[derive(Serialize)]
    struct DecisionEvent<'a> {
        #[serde(rename = "feature_flag.key")]
        key: &'a str,
        #[serde(rename = "feature_flag.result.variant")]
        variant: Option<&'a str>,
        #[serde(rename = "feature_flag.result.reason")]
        reason: &'static str,
        #[serde(rename = "feature_flag.context.id")]
        context_id: Option<String>,
        unit: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        unit_id: Option<&'a str>,
        cluster: Option<&'a str>,
        rule: Option<RuleJson<'a>>,
        bucket: Option<u64>,
        error: Option<&'static str>,
        attributes: Attributes<'a>,
    }

    #[derive(Serialize)]
    struct Event<'a> {
        timestamp: String,
        #[serde(rename = "event.name")]
        name: &'static str,
        #[serde(rename = "feature_flag.provider.name")]
        provider: &'static str,
        #[serde(rename = "feature_flag.version")]
        version: &'a str,
        #[serde(rename = "switchyard.policy.hash")]
        policy_hash: &'a str,
        request_id: Option<&'a str>,
        trace_id: Option<&'a str>,
        cluster: Option<&'a str>,
        reject: Option<u16>,
        decisions: Vec<DecisionEvent<'a>>,
        upstream: Option<UpstreamJson>,
    }

    #[derive(Serialize)]
    struct UpstreamJson {
        status: Option<u16>,
        duration_ms: Option<u64>,
        fallback_used: Option<bool>,
    }

    pub(crate) fn exposure_event(
        policy: &CompiledPolicy,
        outcome: &Outcome<'_>,
        info: &EventInfo<'_>,
    ) -> String {
        let event = Event {
            timestamp: rfc3339_millis(info.timestamp_ms),
            name: "switchyard.exposure",
            provider: "switchyard",
            version: &policy.version,
            policy_hash: &policy.content_hash,
            request_id: info.request_id,
            trace_id: info.traceparent.and_then(trace_id),
            cluster: outcome.cluster,
            reject: outcome.reject.as_ref().map(|r| r.status),
            decisions: outcome
                .decisions
                .iter()
                .map(|d| DecisionEvent {
                    key: d.flag,
                    variant: d.variation,
                    reason: otel_reason(d.reason),
                    context_id: d.unit_pseudonym.map(|p| format!("{p:032x}")),
                    unit: d.unit,
                    unit_id: d.unit_id.as_deref(),
                    cluster: d.cluster,
                    rule: d.rule.as_ref().map(RuleJson),
                    bucket: d.bucket,
                    error: d.error.map(|e| e.as_str()),
                    attributes: Attributes(d.attributes),
                })
                .collect(),
            upstream: info.upstream.map(|u| UpstreamJson {
                status: u.status,
                duration_ms: u.duration_ms,
                fallback_used: u.fallback_used,
            }),
        };
        serde_json::to_string(&event).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_795_305_600_000),
            "2026-11-22T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_millis(253_402_300_800_000),
            "10000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn upstream_is_filled_in_later() {
        let policy = crate::load(
            r#"{"version": "v", "flags": [{"key": "f", "variations": {"a": {}}, "off_variation": "a", "default": {"serve": "a"}}]}"#,
        )
        .unwrap();
        let outcome = policy.evaluate(&crate::Request::default());
        let mut event = policy.exposure_event(&outcome, &EventInfo::default());
        assert!(event.ends_with(",\"upstream\":null}"), "{event}");
        let upstream = UpstreamResult {
            status: Some(503),
            duration_ms: Some(7),
            fallback_used: Some(true),
        };
        // In place: the event's own buffer (it was rendered with room) takes the result.
        let buffer = event.as_ptr();
        add_upstream(&mut event, &upstream);
        assert_eq!(event.as_ptr(), buffer, "the event was copied");
        let v: serde_json::Value = serde_json::from_str(&event).unwrap();
        assert_eq!(v["upstream"]["status"], 503);
        assert_eq!(v["upstream"]["duration_ms"], 7);
        assert_eq!(v["upstream"]["fallback_used"], true);
        assert_eq!(v["decisions"][0]["feature_flag.key"], "f");
        // The same as rendering the event with the result known.
        let known = EventInfo {
            upstream: Some(upstream),
            ..EventInfo::default()
        };
        assert_eq!(policy.exposure_event(&outcome, &known), event);
        // Completed once only: a second result does not change what ran.
        let done = event.clone();
        add_upstream(&mut event, &UpstreamResult::default());
        assert_eq!(event, done);
    }

    #[test]
    fn trace_ids() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(
            trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-4bf92f35-00f067aa0ba902b7-01"), None);
        for invalid in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // parent id zero
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // v00 has 4 fields
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(invalid), None, "{invalid}");
        }
        // A later version may carry more fields after the flags.
        assert_eq!(
            trace_id("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }
}
