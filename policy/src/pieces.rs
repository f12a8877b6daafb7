//! Each decision's three outputs, rendered at policy load for every way a flag can decide.
//!
//! A decision is written three times per request: into the filter state's outcome object, the
//! exposure event's object and the exposure header's Item. A flag decides in few ways: a rule
//! serving its variation (or one of its split's), an override, the default, the kill switch,
//! the consent fallback. For each of them the three outputs are fixed but for the bucket and
//! the unit's pseudonym. So they are rendered here once per (rule or none, variation, reason),
//! cut where those two values go, and a request writes one to three pieces per output instead
//! of five to eight. Every piece is a copy whose length the compiler does not know, which V8
//! runs as a call out of the module (`bench/README.md`): the large benchmark policy made about
//! 300 such copies per request.
//!
//! The pieces are written by the same functions that write a decision piece by piece
//! (`json_out::outcome_head` and the rest), so both give the same bytes. A decision that no
//! piece fits (one with an error or a raw unit id, or a hand-made one) is written piece by
//! piece, as are the ways to decide beyond [`PIECES_BUDGET`].

use crate::compile::{CompiledFlag, CompiledPolicy, CompiledServe};
use crate::json_out::{
    event_head, event_middle, event_tail, outcome_head, outcome_tail, VariationJson,
};
use crate::outcome::{Decision, Reason, RuleRef};
use crate::render::exposure_head;

/// Bytes of pieces one policy may hold. The large benchmark policy (20 flags of 12 rules and
/// 3 variations) has 280 ways to decide, 165 KB of pieces; the example policy 11 ways, 7.7 KB.
/// A policy at the document limits could need gigabytes, so the ways past the budget (in
/// document order) are written piece by piece.
pub(crate) const PIECES_BUDGET: usize = 4 << 20;

/// One way a flag decides, its outputs cut where the per-request values go.
#[derive(Debug, Clone)]
pub(crate) struct DecisionPieces {
    pub variation: usize,
    pub reason: Reason,
    /// A split decided: the pieces are cut at the bucket. Without one the bucket is `null` in
    /// JSON and absent from the Item, so those are written whole in the first pieces.
    pub split: bool,
    /// The outcome object up to the bucket's value (the whole object without a split), then
    /// the rest.
    pub outcome: [Box<str>; 2],
    /// The event's object up to the context id's value; then up to the bucket's value (to the
    /// end without a split); then the rest. Without a pseudonym key every context id is
    /// `null`, so it is written into the first piece, and the second is empty.
    pub event: [Box<str>; 3],
    /// The first event piece holds the context id `null` (the policy has no pseudonym key).
    pub event_null_id: bool,
    /// The exposure Item up to `;bucket=` (the whole Item without a split), then what follows
    /// the bucket's value.
    pub exposure: [Box<str>; 2],
}

impl DecisionPieces {
    fn len(&self) -> usize {
        self.outcome
            .iter()
            .chain(&self.event)
            .chain(&self.exposure)
            .map(|p| p.len())
            .sum()
    }
}

/// A way to decide: (variation, reason, whether a split decided).
type Way = (usize, Reason, bool);

impl CompiledPolicy {
    /// The pieces rendered at load for decision `d` of `flag`, if any fits it exactly.
    pub(crate) fn pieces_for<'s>(
        &'s self,
        flag: &'s CompiledFlag,
        d: &Decision<'_>,
    ) -> Option<&'s DecisionPieces> {
        if d.error.is_some() || d.unit_id.is_some() {
            return None;
        }
        let variation = d.variation_index?;
        let list = match (d.rule_index, d.rule) {
            (Some(i), _) => &flag.rules.get(i)?.pieces,
            (None, None) => &flag.pieces,
            // A hand-made decision naming a rule by reference only: its own rendering.
            (None, Some(_)) => return None,
        };
        let split = d.bucket.is_some();
        list.iter()
            .find(|p| p.variation == variation && p.reason == d.reason && p.split == split)
    }

    /// Renders the pieces of every way each flag can decide, within [`PIECES_BUDGET`].
    pub(crate) fn render_pieces(&mut self) {
        self.render_pieces_within(PIECES_BUDGET);
    }

    fn render_pieces_within(&mut self, mut budget: usize) {
        let mut rendered = Vec::with_capacity(self.flags.len());
        for (flag_index, flag) in self.flags.iter().enumerate() {
            let mut rule_pieces = Vec::with_capacity(flag.rules.len());
            for (i, rule) in flag.rules.iter().enumerate() {
                let ways = serve_ways(&rule.serve, Reason::TargetingMatch);
                let rule = Some((i, RuleRef::of(rule.name.as_deref(), i)));
                rule_pieces.push(self.render_ways(flag_index, flag, rule, &ways, &mut budget));
            }
            let mut ways = serve_ways(&flag.default, Reason::Default);
            for o in &flag.overrides {
                add_way(&mut ways, (o.variation, Reason::TargetingMatch, false));
            }
            add_way(&mut ways, (flag.off_variation, Reason::Disabled, false));
            if let Some((_, crate::compile::CompiledDenied::Serve(v))) = flag.consent {
                add_way(&mut ways, (v, Reason::ConsentDenied, false));
            }
            let flag_pieces = self.render_ways(flag_index, flag, None, &ways, &mut budget);
            rendered.push((rule_pieces, flag_pieces));
        }
        for (flag, (rule_pieces, flag_pieces)) in self.flags.iter_mut().zip(rendered) {
            for (rule, pieces) in flag.rules.iter_mut().zip(rule_pieces) {
                rule.pieces = pieces;
            }
            flag.pieces = flag_pieces;
        }
    }

    fn render_ways(
        &self,
        flag_index: usize,
        flag: &CompiledFlag,
        rule: Option<(usize, RuleRef<'_>)>,
        ways: &[Way],
        budget: &mut usize,
    ) -> Vec<DecisionPieces> {
        let mut list = Vec::new();
        for &(variation_index, reason, split) in ways {
            // Spent: nothing more is rendered, so a policy at the document limits loads no
            // slower for the pieces than one just past the budget.
            if *budget == 0 {
                break;
            }
            let Some(variation) = flag.variations.get(variation_index) else {
                continue;
            };
            let d = Decision {
                flag_index,
                flag: &flag.key,
                variation_index: Some(variation_index),
                variation: Some(&variation.name),
                cluster: variation.cluster.as_deref(),
                reason,
                error: None,
                rule: rule.map(|(_, r)| r),
                rule_index: rule.map(|(i, _)| i),
                bucket: split.then_some(0),
                attributes: &variation.attributes,
                unit: flag.unit_name.as_deref(),
                unit_id: None,
                unit_pseudonym: None,
            };
            let pieces = self.render_way(flag, &variation.json, &d);
            let Some(left) = budget.checked_sub(pieces.len()) else {
                *budget = 0;
                break;
            };
            *budget = left;
            list.push(pieces);
        }
        list
    }

    fn render_way(
        &self,
        flag: &CompiledFlag,
        v: &VariationJson,
        d: &Decision<'_>,
    ) -> DecisionPieces {
        let variation = d.variation_index.and_then(|i| flag.variations.get(i));
        let split = d.bucket.is_some();
        // Each output's text before the bucket's value and after it; without a split the
        // bucket is `null` in JSON and absent from the Item, so the two are joined.
        let join = |mut head: String, null: &str, tail: String| -> [Box<str>; 2] {
            if split {
                [head.into(), tail.into()]
            } else {
                head.push_str(null);
                head.push_str(&tail);
                [head.into(), Box::default()]
            }
        };
        let (mut head, mut tail) = (String::new(), String::new());
        outcome_head(&mut head, flag, v, d);
        outcome_tail(&mut tail, v, d);
        let outcome = join(head, "null", tail);

        let (mut first, mut head, mut tail) = (String::new(), String::new(), String::new());
        event_head(&mut first, v, d);
        event_middle(&mut head, flag, v, d);
        event_tail(&mut tail, v, d);
        let [mut middle, last] = join(head, "null", tail);
        let event_null_id = self.settings.pseudonym_key.is_none();
        if event_null_id {
            first.push_str("null");
            first.push_str(&middle);
            middle = Box::default();
        }

        let (mut head, mut tail) = (String::new(), String::new());
        exposure_head(&mut head, Some(flag), variation, d);
        self.exposure_tail(&mut tail, Some(flag), variation, d);
        let exposure = join(head, "", tail);

        DecisionPieces {
            variation: d.variation_index.unwrap_or_default(),
            reason: d.reason,
            split,
            outcome,
            event: [first.into(), middle, last],
            event_null_id,
            exposure,
        }
    }
}

/// The ways a rule's or the default's `serve` decides: its variation with `fixed_reason`, or
/// each of its split's variations with `SPLIT`.
fn serve_ways(serve: &CompiledServe, fixed_reason: Reason) -> Vec<Way> {
    let mut ways = Vec::new();
    match serve {
        CompiledServe::Variation(v) => ways.push((*v, fixed_reason, false)),
        CompiledServe::Split(split) => {
            for &(v, _) in &split.ends {
                add_way(&mut ways, (v, Reason::Split, true));
            }
        }
    }
    ways
}

fn add_way(ways: &mut Vec<Way>, way: Way) {
    if !ways.contains(&way) {
        ways.push(way);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventInfo;
    use std::collections::BTreeSet;

    fn without_pieces(policy: &CompiledPolicy) -> CompiledPolicy {
        let mut bare = policy.clone();
        for flag in &mut bare.flags {
            flag.pieces.clear();
            for rule in &mut flag.rules {
                rule.pieces.clear();
            }
        }
        bare
    }

    /// Every output of `outcome`, from `policy`.
    fn outputs(policy: &CompiledPolicy, outcome: &crate::Outcome<'_>) -> [String; 4] {
        let info = EventInfo {
            timestamp_ms: 1_795_305_600_123,
            request_id: Some("r-1"),
            traceparent: None,
            upstream: None,
        };
        [
            policy.eval_json(outcome),
            policy.outcome_json(outcome),
            policy.exposure_value(outcome).unwrap_or_default(),
            policy.exposure_event(outcome, &info),
        ]
    }

    fn golden_policies() -> Vec<(String, serde_json::Value)> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{root}/testdata/golden.json")).unwrap(),
        )
        .unwrap();
        golden["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|case| {
                let path = golden["policies"][case["policy"].as_str().unwrap()]
                    .as_str()
                    .unwrap();
                (
                    std::fs::read_to_string(format!("{root}/{path}")).unwrap(),
                    case["request"].clone(),
                )
            })
            .collect()
    }

    /// On every golden case, with and without a pseudonym key, each output written from the
    /// pieces is what the piecewise writers write; and every decision without an error or a
    /// raw unit id is written from pieces, in each way a flag decides.
    #[test]
    fn pieces_write_what_the_piecewise_writers_write() {
        let mut ways_seen = BTreeSet::new();
        for (text, request) in golden_policies() {
            for settings in [
                serde_json::json!({}),
                serde_json::json!({"pseudonym_key": "00112233445566778899aabbccddeeff"}),
                serde_json::json!({"expose_unit_ids": true}),
            ] {
                let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
                doc["settings"] = settings;
                let policy = crate::load(&doc.to_string()).unwrap();
                let bare = without_pieces(&policy);
                let req = crate::Request::from_json(&request.to_string()).unwrap();
                let outcome = policy.evaluate(&req);
                assert_eq!(outputs(&policy, &outcome), outputs(&bare, &outcome));
                for d in &outcome.decisions {
                    let flag = &policy.flags[d.flag_index];
                    // A consent reject has no variation, and no pieces.
                    let fits =
                        d.error.is_none() && d.unit_id.is_none() && d.variation_index.is_some();
                    assert_eq!(policy.pieces_for(flag, d).is_some(), fits, "{d:?}");
                    if fits {
                        ways_seen.insert((format!("{:?}", d.reason), d.rule_index.is_some()));
                    }
                }
            }
        }
        let expected = [
            ("TargetingMatch", true),  // a rule's variation
            ("TargetingMatch", false), // an override
            ("Split", true),
            ("Split", false), // the default's split
            ("Default", false),
            ("Disabled", false),
            ("ConsentDenied", false), // the consent fallback
        ];
        for (reason, by_rule) in expected {
            assert!(
                ways_seen.contains(&(reason.to_string(), by_rule)),
                "no golden case decides {reason} (by a rule: {by_rule}) from pieces: {ways_seen:?}"
            );
        }
    }

    /// Past the budget a flag's ways are written piece by piece, and the outputs stay the same.
    #[test]
    fn past_the_budget_decisions_are_written_piece_by_piece() {
        let (text, request) = golden_policies().swap_remove(0);
        let full = crate::load(&text).unwrap();
        let first_flag: usize = full.flags[0]
            .rules
            .iter()
            .flat_map(|r| &r.pieces)
            .chain(&full.flags[0].pieces)
            .map(DecisionPieces::len)
            .sum();
        let mut policy = without_pieces(&full);
        policy.render_pieces_within(first_flag);
        let counts: Vec<usize> = policy
            .flags
            .iter()
            .map(|f| f.pieces.len() + f.rules.iter().map(|r| r.pieces.len()).sum::<usize>())
            .collect();
        assert!(
            counts[0] > 0 && counts[1..].iter().all(|&n| n == 0),
            "{counts:?}"
        );
        let req = crate::Request::from_json(&request.to_string()).unwrap();
        let outcome = policy.evaluate(&req);
        assert_eq!(outputs(&policy, &outcome), outputs(&full, &outcome));
    }

    /// Without a pseudonym key the event's pieces hold the context id `null`; a decision that
    /// carries a pseudonym all the same is written with it.
    #[test]
    fn a_pseudonym_without_a_key_is_written_as_it_reads() {
        let mut carried = 0;
        for (text, request) in golden_policies() {
            let policy = crate::load(&text).unwrap();
            if policy.settings.pseudonym_key.is_some() {
                continue;
            }
            let bare = without_pieces(&policy);
            let req = crate::Request::from_json(&request.to_string()).unwrap();
            let mut outcome = policy.evaluate(&req);
            for d in &mut outcome.decisions {
                d.unit_pseudonym = Some(0x0123_4567_89ab_cdef);
                carried += usize::from(policy.pieces_for(&policy.flags[d.flag_index], d).is_some());
            }
            assert_eq!(outputs(&policy, &outcome), outputs(&bare, &outcome));
        }
        assert!(carried > 0);
    }
}
