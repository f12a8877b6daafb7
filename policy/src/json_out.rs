//! Per-request JSON, written from fragments rendered once at policy load.
//!
//! The benchmark showed serializing the two filter-state documents with serde cost several
//! times more than evaluating the policy. Almost everything in them is fixed per flag and
//! variation (names, cluster, attributes), so `compile` renders those parts once (with
//! serde_json, so escaping is serde's) and a request only appends reason, rule, bucket and ids.
//! The output is byte-for-byte what the serde structs in this module's tests produce.

use std::fmt::Write;

use crate::compile::{CompiledFlag, CompiledPolicy, CompiledVariation};
use crate::digits::{push_hex_u128, push_u64};
use crate::event::{push_rfc3339_millis, trace_id, EventInfo};
use crate::outcome::{Decision, ErrorCode, Outcome, Reason, RuleRef};

/// `s` as a JSON string, escaped as serde_json escapes (`"`, `\`, control characters).
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A JSON string literal, rendered at load time.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    json_str(&mut out, s);
    out
}

fn opt_literal(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_string(), literal)
}

/// The fixed parts of a variation's decision objects. The renderers below append few, long
/// pieces: each push checks the buffer's room, and one whose length the compiler does not know
/// is a `memory.copy`, which V8 runs as a call out of the module (`bench/README.md`, "Where a
/// case's extra Envoy instructions go"). So pieces fixed per flag, variation, rule, reason or
/// error are joined at load or in constant tables, while a short literal stays a literal, which
/// the compiler writes in place.
#[derive(Debug, Clone, Default)]
pub struct VariationJson {
    /// `{"flag":F,"variation":V,"cluster":C`
    pub eval_head: String,
    /// `{"feature_flag.key":F,"feature_flag.result.variant":V`
    pub event_head: String,
    /// `"C"` or `null`
    pub cluster: String,
    /// The event's `,"cluster":C,"rule":`
    pub event_cluster: String,
    /// `,"attributes":{"name":"value",...}`
    pub attributes: String,
}

/// What follows a decision's rule in both JSON outputs.
pub(crate) const BUCKET_KEY: &str = ",\"bucket\":";

/// The event's `,"unit":U` for a flag's unit name (or `null`).
pub(crate) fn event_unit(unit: Option<&str>) -> String {
    format!(",\"unit\":{}", opt_literal(unit))
}

/// The `eval` line's `,"reason":R,"error":E,"rule":` for the pairs the engine makes (an error
/// code comes only with `ERROR`); `None` for any other pair.
fn outcome_reason_error(reason: Reason, error: Option<ErrorCode>) -> Option<&'static str> {
    Some(match (reason, error) {
        (Reason::TargetingMatch, None) => {
            ",\"reason\":\"TARGETING_MATCH\",\"error\":null,\"rule\":"
        }
        (Reason::Split, None) => ",\"reason\":\"SPLIT\",\"error\":null,\"rule\":",
        (Reason::Default, None) => ",\"reason\":\"DEFAULT\",\"error\":null,\"rule\":",
        (Reason::Disabled, None) => ",\"reason\":\"DISABLED\",\"error\":null,\"rule\":",
        (Reason::ConsentDenied, None) => ",\"reason\":\"CONSENT_DENIED\",\"error\":null,\"rule\":",
        (Reason::Error, None) => ",\"reason\":\"ERROR\",\"error\":null,\"rule\":",
        (Reason::Error, Some(ErrorCode::TargetingKeyMissing)) => {
            ",\"reason\":\"ERROR\",\"error\":\"TARGETING_KEY_MISSING\",\"rule\":"
        }
        (Reason::Error, Some(ErrorCode::ProviderNotReady)) => {
            ",\"reason\":\"ERROR\",\"error\":\"PROVIDER_NOT_READY\",\"rule\":"
        }
        _ => return None,
    })
}

/// The event's `,"feature_flag.result.reason":R,"feature_flag.context.id":`.
fn event_reason(reason: Reason) -> &'static str {
    match reason {
        Reason::TargetingMatch => {
            ",\"feature_flag.result.reason\":\"targeting_match\",\"feature_flag.context.id\":"
        }
        Reason::Split => ",\"feature_flag.result.reason\":\"split\",\"feature_flag.context.id\":",
        Reason::Default => {
            ",\"feature_flag.result.reason\":\"default\",\"feature_flag.context.id\":"
        }
        Reason::Disabled => {
            ",\"feature_flag.result.reason\":\"disabled\",\"feature_flag.context.id\":"
        }
        Reason::ConsentDenied => {
            ",\"feature_flag.result.reason\":\"consent_denied\",\"feature_flag.context.id\":"
        }
        Reason::Error => ",\"feature_flag.result.reason\":\"error\",\"feature_flag.context.id\":",
    }
}

/// The event's `,"error":E` (the `attributes` that follow are the variation's own piece). The
/// usual `null` is pushed as a literal: the compiler writes a short one in place, while a piece
/// from a table is a copy (`memory.copy`) whose length it does not know. One `push_str` of a
/// `match` over all three literals is such a piece too: measured, it made the large policy 20
/// copies and 1k wasm instructions per request dearer.
fn push_event_error(out: &mut String, error: Option<ErrorCode>) {
    match error {
        None => out.push_str(",\"error\":null"),
        Some(error) => out.push_str(event_error(error)),
    }
}

fn event_error(error: ErrorCode) -> &'static str {
    match error {
        ErrorCode::TargetingKeyMissing => ",\"error\":\"TARGETING_KEY_MISSING\"",
        ErrorCode::ProviderNotReady => ",\"error\":\"PROVIDER_NOT_READY\"",
    }
}

impl VariationJson {
    pub fn new(
        flag: &str,
        name: Option<&str>,
        cluster: Option<&str>,
        attrs: &[(String, String)],
    ) -> Self {
        let (flag, variation, cluster) = (literal(flag), opt_literal(name), opt_literal(cluster));
        let mut attributes = String::from(",\"attributes\":{");
        for (i, (k, v)) in attrs.iter().enumerate() {
            if i > 0 {
                attributes.push(',');
            }
            json_str(&mut attributes, k);
            attributes.push(':');
            json_str(&mut attributes, v);
        }
        attributes.push('}');
        VariationJson {
            eval_head: format!("{{\"flag\":{flag},\"variation\":{variation},\"cluster\":{cluster}"),
            event_head: format!(
                "{{\"feature_flag.key\":{flag},\"feature_flag.result.variant\":{variation}"
            ),
            event_cluster: format!(",\"cluster\":{cluster},\"rule\":"),
            cluster,
            attributes,
        }
    }
}

/// A rule as a decision names it: its name as a JSON string, or its index. Rendered once per
/// rule at load ([`crate::compile::CompiledRule::json`]).
pub(crate) fn push_rule_ref(out: &mut String, rule: RuleRef<'_>) {
    match rule {
        RuleRef::Name(name) => json_str(out, name),
        RuleRef::Index(i) => push_u64(out, i as u64),
    }
}

/// The decision's rule, then `,"bucket":`.
fn rule_then_bucket(out: &mut String, flag: &CompiledFlag, d: &Decision<'_>) {
    match (d.rule_index.and_then(|i| flag.rules.get(i)), d.rule) {
        (Some(r), _) => out.push_str(&r.json_then_bucket),
        // Not reached for the engine's own decisions (a rule reference always comes with its
        // index); kept so a hand-made decision still renders.
        (None, Some(rule)) => {
            push_rule_ref(out, rule);
            out.push_str(BUCKET_KEY);
        }
        (None, None) => out.push_str("null,\"bucket\":"),
    }
}

fn opt_static(out: &mut String, v: Option<&'static str>) {
    match v {
        Some(v) => {
            out.push('"');
            out.push_str(v);
            out.push('"');
        }
        None => out.push_str("null"),
    }
}

/// A decision's filter-state object up to the bucket's value: flag, variation, cluster,
/// reason, error, rule, then `,"bucket":`. With [`outcome_tail`], how a decision is written
/// piece by piece, and how its pieces are rendered at load ([`crate::pieces`]).
pub(crate) fn outcome_head(out: &mut String, flag: &CompiledFlag, v: &VariationJson, d: &Decision) {
    out.push_str(&v.eval_head);
    match outcome_reason_error(d.reason, d.error) {
        Some(piece) => out.push_str(piece),
        None => {
            out.push_str(",\"reason\":\"");
            out.push_str(d.reason.as_str());
            out.push_str("\",\"error\":");
            opt_static(out, d.error.map(|e| e.as_str()));
            out.push_str(",\"rule\":");
        }
    }
    rule_then_bucket(out, flag, d);
}

/// A decision's filter-state object after the bucket's value.
pub(crate) fn outcome_tail(out: &mut String, v: &VariationJson, d: &Decision) {
    out.push_str(&v.attributes);
    if let Some(id) = &d.unit_id {
        out.push_str(",\"unit_id\":");
        json_str(out, id);
    }
    out.push('}');
}

/// A decision's event object up to the context id's value: flag, variation, reason.
pub(crate) fn event_head(out: &mut String, v: &VariationJson, d: &Decision) {
    out.push_str(&v.event_head);
    out.push_str(event_reason(d.reason));
}

/// The pseudonymous unit id as a JSON string, or `null`.
fn push_context_id(out: &mut String, pseudonym: Option<u128>) {
    match pseudonym {
        Some(p) => {
            out.push('"');
            push_hex_u128(out, p);
            out.push('"');
        }
        None => out.push_str("null"),
    }
}

/// A decision's event object from after the context id to the bucket's value: unit, raw unit
/// id, cluster, rule, then `,"bucket":`.
pub(crate) fn event_middle(out: &mut String, flag: &CompiledFlag, v: &VariationJson, d: &Decision) {
    out.push_str(&flag.event_unit);
    if let Some(id) = &d.unit_id {
        out.push_str(",\"unit_id\":");
        json_str(out, id);
    }
    out.push_str(&v.event_cluster);
    rule_then_bucket(out, flag, d);
}

/// A decision's event object after the bucket's value: error and attributes.
pub(crate) fn event_tail(out: &mut String, v: &VariationJson, d: &Decision) {
    push_event_error(out, d.error);
    out.push_str(&v.attributes);
    out.push('}');
}

/// Bucket digits or `null`, as both JSON outputs write a decision's bucket.
fn opt_u64(out: &mut String, v: Option<u64>) {
    match v {
        Some(v) => push_u64(out, v),
        None => out.push_str("null"),
    }
}

impl CompiledPolicy {
    pub(crate) fn parts<'p>(
        &'p self,
        d: &Decision<'_>,
    ) -> Option<(&'p CompiledFlag, &'p VariationJson)> {
        let flag = self.flags.get(d.flag_index)?;
        let json = match d.variation_index.and_then(|v| flag.variations.get(v)) {
            Some(CompiledVariation { json, .. }) => json,
            None => &flag.no_variation_json,
        };
        Some((flag, json))
    }

    /// The route-deciding decision's cluster as JSON, rendered at load (`None` without one).
    fn route_cluster_json(&self, outcome: &Outcome<'_>) -> Option<&str> {
        let d = outcome.decisions.get(outcome.route_decision?)?;
        self.parts(d).map(|(_, v)| v.cluster.as_str())
    }

    /// Writes each decision with `write` (comma-separated), given its flag and JSON parts.
    fn each_decision(
        &self,
        out: &mut String,
        outcome: &Outcome<'_>,
        mut write: impl FnMut(&mut String, &CompiledFlag, &VariationJson, &Decision<'_>),
    ) {
        let mut first = true;
        for d in &outcome.decisions {
            let Some((flag, v)) = self.parts(d) else {
                continue;
            };
            if !first {
                out.push(',');
            }
            first = false;
            write(out, flag, v, d);
        }
    }

    /// `{"version"?, "cluster", "reject", "decisions": [...]}` (the `eval` line format).
    pub(crate) fn write_outcome(&self, outcome: &Outcome<'_>, with_version: bool) -> String {
        let mut out = String::with_capacity(64 + 256 * outcome.decisions.len());
        self.append_outcome(outcome, with_version, &mut out);
        out
    }

    /// [`Self::write_outcome`], appended to `out`.
    pub(crate) fn append_outcome(
        &self,
        outcome: &Outcome<'_>,
        with_version: bool,
        out: &mut String,
    ) {
        out.push('{');
        if with_version {
            out.push_str("\"version\":");
            out.push_str(&self.version_json);
            out.push(',');
        }
        out.push_str("\"cluster\":");
        match (
            self.route_cluster_json(outcome),
            outcome.route_decision.and(outcome.cluster),
        ) {
            (Some(cluster), _) => out.push_str(cluster),
            (None, Some(cluster)) => json_str(out, cluster),
            (None, None) => out.push_str("null"),
        }
        out.push_str(",\"reject\":");
        match &outcome.reject {
            Some(r) => {
                out.push_str("{\"status\":");
                push_u64(out, u64::from(r.status));
                out.push_str(",\"flag\":");
                match self.flags.get(r.flag_index) {
                    Some(f) => out.push_str(&f.key_json),
                    None => json_str(out, r.flag),
                }
                out.push_str(",\"reason\":\"");
                out.push_str(r.reason.as_str());
                out.push_str("\"}");
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"decisions\":[");
        self.each_decision(out, outcome, |out, flag, v, d| {
            match self.pieces_for(flag, d) {
                Some(p) => {
                    out.push_str(&p.outcome[0]);
                    if let Some(bucket) = d.bucket {
                        push_u64(out, bucket);
                        out.push_str(&p.outcome[1]);
                    }
                }
                None => {
                    outcome_head(out, flag, v, d);
                    opt_u64(out, d.bucket);
                    outcome_tail(out, v, d);
                }
            }
        });
        out.push_str("]}");
    }

    /// The exposure event (see `event`), `upstream` null, appended to `out`.
    pub(crate) fn append_event(
        &self,
        outcome: &Outcome<'_>,
        info: &EventInfo<'_>,
        out: &mut String,
    ) {
        out.push_str("{\"timestamp\":\"");
        push_rfc3339_millis(out, info.timestamp_ms);
        out.push_str("\",\"event.name\":\"switchyard.exposure\",\"feature_flag.provider.name\":\"switchyard\",\"feature_flag.version\":");
        out.push_str(&self.version_json);
        out.push_str(",\"switchyard.policy.hash\":\"");
        out.push_str(&self.content_hash);
        out.push_str("\",\"request_id\":");
        match info.request_id {
            Some(id) => json_str(out, id),
            None => out.push_str("null"),
        }
        out.push_str(",\"trace_id\":");
        match info.traceparent.and_then(trace_id) {
            Some(t) => json_str(out, t),
            None => out.push_str("null"),
        }
        out.push_str(",\"cluster\":");
        out.push_str(self.route_cluster_json(outcome).unwrap_or("null"));
        out.push_str(",\"reject\":");
        opt_u64(out, outcome.reject.as_ref().map(|r| u64::from(r.status)));
        out.push_str(",\"decisions\":[");
        self.each_decision(out, outcome, |out, flag, v, d| {
            // A hand-made pseudonym under a policy without a key is written piece by piece.
            let pieces = self
                .pieces_for(flag, d)
                .filter(|p| !p.event_null_id || d.unit_pseudonym.is_none());
            match pieces {
                Some(p) => {
                    out.push_str(&p.event[0]);
                    if !p.event_null_id {
                        push_context_id(out, d.unit_pseudonym);
                        out.push_str(&p.event[1]);
                    }
                    if let Some(bucket) = d.bucket {
                        push_u64(out, bucket);
                        out.push_str(&p.event[2]);
                    }
                }
                None => {
                    event_head(out, v, d);
                    push_context_id(out, d.unit_pseudonym);
                    event_middle(out, flag, v, d);
                    opt_u64(out, d.bucket);
                    event_tail(out, v, d);
                }
            }
        });
        out.push_str("],\"upstream\":null}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every golden case, and variants with raw and pseudonymous unit ids and odd request ids,
    /// written by the fast writer and by the serde reference: the same bytes.
    #[test]
    fn same_bytes_as_serde_on_every_golden_case() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{root}/testdata/golden.json")).unwrap(),
        )
        .unwrap();
        let mut checked = 0;
        for case in golden["cases"].as_array().unwrap() {
            let path = golden["policies"][case["policy"].as_str().unwrap()]
                .as_str()
                .unwrap();
            let text = std::fs::read_to_string(format!("{root}/{path}")).unwrap();
            let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
            for settings in [
                serde_json::json!({}),
                serde_json::json!({"expose_unit_ids": true, "pseudonym_key": "00112233445566778899aabbccddeeff"}),
            ] {
                doc["settings"] = settings;
                let policy = crate::load(&doc.to_string()).unwrap();
                let mut req = crate::Request::from_json(&case["request"].to_string()).unwrap();
                req.headers
                    .push(("x-conversation-id".into(), "c\"\\\u{1}é".into()));
                let outcome = policy.evaluate(&req);
                assert_eq!(
                    policy.eval_json(&outcome),
                    crate::render::reference::eval_json(&outcome, None)
                );
                assert_eq!(
                    policy.outcome_json(&outcome),
                    crate::render::reference::eval_json(&outcome, Some(policy.version()))
                );
                let info = EventInfo {
                    timestamp_ms: 1_795_305_600_123,
                    request_id: Some("req \"1\"\n"),
                    traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                    upstream: None,
                };
                assert_eq!(
                    policy.exposure_event(&outcome, &info),
                    crate::event::reference::exposure_event(&policy, &outcome, &info)
                );
                checked += 1;
            }
        }
        assert!(checked >= 90);
    }

    /// The tables of joined pieces say what writing each piece on its own says.
    #[test]
    fn joined_pieces_match_the_pieces() {
        let errors = [
            None,
            Some(ErrorCode::TargetingKeyMissing),
            Some(ErrorCode::ProviderNotReady),
        ];
        let quoted =
            |e: Option<ErrorCode>| e.map_or("null".to_string(), |e| format!("\"{}\"", e.as_str()));
        for reason in Reason::ALL {
            for error in errors {
                let piecewise = format!(
                    ",\"reason\":\"{}\",\"error\":{},\"rule\":",
                    reason.as_str(),
                    quoted(error)
                );
                match outcome_reason_error(reason, error) {
                    Some(piece) => assert_eq!(piece, piecewise),
                    None => assert!(reason != Reason::Error && error.is_some()),
                }
            }
            assert_eq!(
                event_reason(reason),
                format!(
                    ",\"feature_flag.result.reason\":\"{}\",\"feature_flag.context.id\":",
                    crate::event::otel_reason(reason)
                )
            );
        }
        for error in errors {
            let mut piece = String::new();
            push_event_error(&mut piece, error);
            assert_eq!(piece, format!(",\"error\":{}", quoted(error)));
        }
    }

    /// A decision no evaluation makes (an error code with another reason, a rule known only by
    /// reference) still renders as serde renders it.
    #[test]
    fn hand_made_decisions_render_like_serde() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/support-copilot/policy.json"
        ))
        .unwrap();
        let policy = crate::load(&text).unwrap();
        let req = crate::Request::from_json(
            r#"{"path": "/v1/chat/completions", "headers": {"x-tenant-id": "acme", "x-conversation-id": "c1"}}"#,
        )
        .unwrap();
        let mut outcome = policy.evaluate(&req);
        assert!(!outcome.decisions.is_empty());
        for d in &mut outcome.decisions {
            d.reason = Reason::Split;
            d.error = Some(ErrorCode::ProviderNotReady);
            d.rule = Some(RuleRef::Name("by \"name\""));
            d.rule_index = None;
        }
        assert_eq!(
            policy.eval_json(&outcome),
            crate::render::reference::eval_json(&outcome, None)
        );
        let info = EventInfo::default();
        assert_eq!(
            policy.exposure_event(&outcome, &info),
            crate::event::reference::exposure_event(&policy, &outcome, &info)
        );
    }

    #[test]
    fn escapes_like_serde() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\n\r\t",
            "\u{1}\u{1f}\u{7f}",
            "é ü 😀",
            "\u{8}\u{c}",
            "",
        ] {
            assert_eq!(literal(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }
}
