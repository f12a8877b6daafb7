//! How decisions are written out: the RFC 8941 exposure header, plain attribute headers, the
//! JSON object (`switchyard eval`'s line format, also the filter state) and the reject body.
//!
//! The exposure header is a structured-field List with one Item per decision:
//!
//! ```text
//! x-switchyard-exposure: "support_answer_model_route";variation="candidate";reason=SPLIT;rule="paid canary";bucket=3;version="2026-11-21.3";attr.model_route="support_model_b"
//! ```
//!
//! The Item is the flag key (a String); parameters: `variation` (String; absent for a consent
//! reject), `reason` (Token), `error` (Token, with reason ERROR), `rule` (String name or Integer
//! index), `bucket` (Integer), `version` (String), `unit` and `unit_id` (Strings, only with
//! `settings.expose_unit_ids`), then `attr.NAME` (String) per variation attribute. Parts that do
//! not change per request are rendered once at policy load.

use std::borrow::Cow;
use std::fmt::Write;

use serde::Serialize;

use crate::compile::{CompiledFlag, CompiledPolicy, CompiledVariation};
use crate::digits::push_u64;
use crate::outcome::{Decision, Outcome, Reject, RuleRef};

/// `"value"` as an RFC 8941 String. Policy names are checked to be printable ASCII at load;
/// anything else (a raw unit id) is percent-encoded so the header stays valid.
pub fn sf_string(out: &mut String, value: &str) {
    out.push('"');
    for b in value.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            b'%' => out.push_str("%25"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out.push('"');
}

pub(crate) fn exposure_item_start(flag: &str, variation: &str) -> String {
    let mut s = String::new();
    sf_string(&mut s, flag);
    s.push_str(";variation=");
    sf_string(&mut s, variation);
    s
}

/// A rule's exposure parameter: `;rule="name"`, or `;rule=INDEX` for a rule without a name.
/// Rendered once per rule at load ([`crate::compile::CompiledRule::exposure_param`]).
pub(crate) fn push_exposure_rule_param(out: &mut String, rule: RuleRef<'_>) {
    out.push_str(";rule=");
    match rule {
        RuleRef::Name(name) => sf_string(out, name),
        RuleRef::Index(i) => push_u64(out, i as u64),
    }
}

pub(crate) fn exposure_attribute_params(attributes: &[(String, String)]) -> String {
    let mut s = String::new();
    for (name, value) in attributes {
        s.push_str(";attr.");
        s.push_str(name);
        s.push('=');
        sf_string(&mut s, value);
    }
    s
}

/// A decision's exposure Item up to its bucket: the flag and variation, reason, error and rule.
/// With [`CompiledPolicy::exposure_tail`], how an Item is written piece by piece, and how its
/// pieces are rendered at load ([`crate::pieces`]).
pub(crate) fn exposure_head(
    out: &mut String,
    flag: Option<&CompiledFlag>,
    variation: Option<&CompiledVariation>,
    d: &Decision<'_>,
) {
    match variation {
        Some(v) => out.push_str(&v.exposure_item),
        None => sf_string(out, d.flag),
    }
    out.push_str(";reason=");
    out.push_str(d.reason.as_str());
    if let Some(e) = d.error {
        out.push_str(";error=");
        out.push_str(e.as_str());
    }
    match (
        flag.zip(d.rule_index).and_then(|(f, i)| f.rules.get(i)),
        d.rule,
    ) {
        (Some(rule), _) => out.push_str(&rule.exposure_param),
        (None, Some(rule)) => push_exposure_rule_param(out, rule),
        (None, None) => {}
    }
}

/// The default plain header for a variation attribute: `model_route` → `x-switchyard-attr-model-route`.
pub fn default_attribute_header(attribute: &str) -> String {
    format!(
        "{}attr-{}",
        crate::compile::OWNED_PREFIX,
        attribute.replace('_', "-")
    )
}

impl CompiledPolicy {
    /// The outcome as `switchyard eval` prints it: `{"cluster", "reject", "decisions"}`.
    pub fn eval_json(&self, outcome: &Outcome<'_>) -> String {
        self.write_outcome(outcome, false)
    }

    /// The outcome with the policy version, for the filter state and access logs.
    pub fn outcome_json(&self, outcome: &Outcome<'_>) -> String {
        self.write_outcome(outcome, true)
    }

    /// [`Self::outcome_json`], written into `buffer` (cleared first), which the filter keeps
    /// between requests.
    pub fn outcome_json_into(&self, outcome: &Outcome<'_>, buffer: &mut String) {
        buffer.clear();
        self.append_outcome(outcome, true, buffer);
    }

    /// The local reply body for a consent reject.
    pub fn reject_body(&self, reject: &Reject<'_>) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'static str,
            flag: &'a str,
            reason: &'static str,
            message: String,
        }
        serde_json::to_string(&Body {
            error: "consent_denied",
            flag: reject.flag,
            reason: reject.reason.as_str(),
            message: format!(
                "this tenant has not consented to the AI feature behind flag \"{}\"",
                reject.flag
            ),
        })
        .unwrap_or_default()
    }

    /// The exposure header's value: one Item per decision, or `None` when no flag decided.
    pub fn exposure_value(&self, outcome: &Outcome<'_>) -> Option<String> {
        if outcome.decisions.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(256 * outcome.decisions.len());
        self.write_exposure_value(outcome, &mut out);
        Some(out)
    }

    /// [`Self::exposure_value`], appended to `out` (nothing when no flag decided): the filter
    /// renders into one buffer it keeps between requests, since an allocation of this size is
    /// among the dearest things a request does in the module (bench/README.md).
    pub fn write_exposure_value(&self, outcome: &Outcome<'_>, out: &mut String) {
        for (i, d) in outcome.decisions.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let flag = self.flags.get(d.flag_index);
            if let Some(p) = flag.and_then(|f| self.pieces_for(f, d)) {
                out.push_str(&p.exposure[0]);
                if let Some(bucket) = d.bucket {
                    out.push_str(";bucket=");
                    push_u64(out, bucket);
                    out.push_str(&p.exposure[1]);
                }
                continue;
            }
            let variation = flag
                .zip(d.variation_index)
                .and_then(|(f, v)| f.variations.get(v));
            exposure_head(out, flag, variation, d);
            if let Some(bucket) = d.bucket {
                out.push_str(";bucket=");
                push_u64(out, bucket);
            }
            self.exposure_tail(out, flag, variation, d);
        }
    }

    /// A decision's exposure Item after its bucket: the version, the raw unit id (only with
    /// `expose_unit_ids`) and the variation's attributes.
    pub(crate) fn exposure_tail(
        &self,
        out: &mut String,
        flag: Option<&CompiledFlag>,
        variation: Option<&CompiledVariation>,
        d: &Decision<'_>,
    ) {
        out.push_str(";version=");
        out.push_str(&self.version_sf);
        if let (Some(unit_id), Some(unit)) = (&d.unit_id, flag.and_then(|f| f.unit_name.as_deref()))
        {
            out.push_str(";unit=");
            sf_string(out, unit);
            out.push_str(";unit_id=");
            sf_string(out, unit_id);
        }
        if let Some(v) = variation {
            out.push_str(&v.exposure_attributes);
        }
    }

    /// Every header to stamp on the upstream request: the exposure list, the policy version,
    /// and the route-deciding variation's attributes as plain headers. Only the exposure list
    /// is rendered per request; the rest borrows from the policy.
    pub fn exposure_headers(&self, outcome: &Outcome<'_>) -> Vec<(&str, Cow<'_, str>)> {
        // The exposure list, the version and the usual few attributes without growing.
        let mut headers = Vec::with_capacity(5);
        let Some(exposure) = self.exposure_value(outcome) else {
            return headers;
        };
        headers.push((self.settings.exposure_header.as_str(), Cow::Owned(exposure)));
        self.each_policy_header(outcome, |name, value| {
            headers.push((name, Cow::Borrowed(value)));
        });
        headers
    }

    /// [`Self::exposure_headers`], handed to `stamp` one at a time, with the exposure list
    /// rendered into `buffer` (cleared first): the filter writes each header straight to the
    /// request and keeps the buffer, so a request allocates neither a list nor the value.
    pub fn each_exposure_header<'s>(
        &'s self,
        outcome: &Outcome<'_>,
        buffer: &mut String,
        mut stamp: impl FnMut(&'s str, &str),
    ) {
        buffer.clear();
        if outcome.decisions.is_empty() {
            return;
        }
        self.write_exposure_value(outcome, buffer);
        stamp(self.settings.exposure_header.as_str(), buffer);
        self.each_policy_header(outcome, stamp);
    }

    /// The headers after the exposure list, whose values the policy holds: the version, and
    /// the route-deciding variation's attributes.
    fn each_policy_header<'s>(
        &'s self,
        outcome: &Outcome<'_>,
        mut stamp: impl FnMut(&'s str, &'s str),
    ) {
        if let Some(version_header) = &self.settings.version_header {
            stamp(version_header.as_str(), self.version.as_str());
        }
        let route_variation = outcome
            .route_decision
            .and_then(|i| outcome.decisions.get(i))
            .and_then(|d| {
                let flag = self.flags.get(d.flag_index)?;
                flag.variations.get(d.variation_index?)
            });
        if let Some(v) = route_variation {
            for (name, value) in &v.attribute_headers {
                stamp(name.as_str(), value.as_str());
            }
        }
    }
}

/// The serde rendering the fast writer (`json_out`) must reproduce byte for byte.
#[cfg(test)]
pub(crate) mod reference {
    use super::*;
    use crate::outcome::Decision;

    #[derive(Serialize)]
    pub(crate) struct RuleJson<'a>(#[serde(with = "rule_ref")] pub(crate) &'a RuleRef<'a>);

    mod rule_ref {
        use super::RuleRef;
        use serde::Serializer;

        pub fn serialize<S: Serializer>(r: &&RuleRef<'_>, s: S) -> Result<S::Ok, S::Error> {
            match r {
                RuleRef::Name(n) => s.serialize_str(n),
                RuleRef::Index(i) => s.serialize_u64(*i as u64),
            }
        }
    }

    pub(crate) struct Attributes<'a>(pub(crate) &'a [(String, String)]);

    impl Serialize for Attributes<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }

    #[derive(Serialize)]
    struct DecisionJson<'a> {
        flag: &'a str,
        variation: Option<&'a str>,
        cluster: Option<&'a str>,
        reason: &'static str,
        error: Option<&'static str>,
        rule: Option<RuleJson<'a>>,
        bucket: Option<u64>,
        attributes: Attributes<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        unit_id: Option<&'a str>,
    }

    #[derive(Serialize)]
    struct RejectJson<'a> {
        status: u16,
        flag: &'a str,
        reason: &'static str,
    }

    #[derive(Serialize)]
    struct OutcomeJson<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<&'a str>,
        cluster: Option<&'a str>,
        reject: Option<RejectJson<'a>>,
        decisions: Vec<DecisionJson<'a>>,
    }

    fn outcome_json<'a>(outcome: &'a Outcome<'a>, version: Option<&'a str>) -> OutcomeJson<'a> {
        OutcomeJson {
            version,
            cluster: outcome.cluster,
            reject: outcome.reject.as_ref().map(|r| RejectJson {
                status: r.status,
                flag: r.flag,
                reason: r.reason.as_str(),
            }),
            decisions: outcome
                .decisions
                .iter()
                .map(|d: &Decision<'_>| DecisionJson {
                    flag: d.flag,
                    variation: d.variation,
                    cluster: d.cluster,
                    reason: d.reason.as_str(),
                    error: d.error.map(|e| e.as_str()),
                    rule: d.rule.as_ref().map(RuleJson),
                    bucket: d.bucket,
                    attributes: Attributes(d.attributes),
                    unit_id: d.unit_id.as_deref(),
                })
                .collect(),
        }
    }
    pub(crate) fn eval_json(outcome: &Outcome<'_>, version: Option<&str>) -> String {
        serde_json::to_string(&outcome_json(outcome, version)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sf_strings_escape_and_encode() {
        let mut s = String::new();
        sf_string(&mut s, "a \"b\" \\ 100% é");
        assert_eq!(s, "\"a \\\"b\\\" \\\\ 100%25 %C3%A9\"");
    }

    /// A rule is named in the exposure item and the JSON by its name, or by its index when it
    /// has none; both forms come from fragments rendered at load.
    #[test]
    fn rules_are_named_or_numbered() {
        let policy = crate::load(
            r#"{"version": "r1", "context": {"plan": {"header": "x-plan"}},
                "flags": [{"key": "f", "variations": {"a": {}, "b": {}},
                  "off_variation": "a", "default": {"serve": "a"},
                  "rules": [
                    {"name": "pro \"tier\"", "when": [{"attribute": "plan", "op": "in", "values": ["pro"]}], "serve": "b"},
                    {"when": [{"attribute": "plan", "op": "in", "values": ["free"]}], "serve": "a"}]}]}"#,
        )
        .unwrap();
        let decide = |plan: &str| {
            let req =
                crate::Request::from_json(&format!(r#"{{"headers": {{"x-plan": "{plan}"}}}}"#))
                    .unwrap();
            let outcome = policy.evaluate(&req);
            let json: serde_json::Value =
                serde_json::from_str(&policy.eval_json(&outcome)).unwrap();
            (
                policy.exposure_value(&outcome).unwrap(),
                json["decisions"][0]["rule"].clone(),
            )
        };
        let (exposure, rule) = decide("pro");
        assert!(exposure.contains(r#";rule="pro \"tier\"";"#), "{exposure}");
        assert_eq!(rule, "pro \"tier\"");
        let (exposure, rule) = decide("free");
        assert!(exposure.contains(";rule=1;"), "{exposure}");
        assert_eq!(rule, 1);
        let (exposure, rule) = decide("other");
        assert!(!exposure.contains(";rule="), "{exposure}");
        assert!(rule.is_null());
    }

    #[test]
    fn default_attribute_headers() {
        assert_eq!(
            default_attribute_header("model_route"),
            "x-switchyard-attr-model-route"
        );
    }
}
