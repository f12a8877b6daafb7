//! Evaluation, in the contract's order, per flag in document order: scope, consent, kill
//! switch, overrides, rules, default. The only allocations are the context's decoded values
//! and the decision list.

use std::borrow::Cow;

use crate::bucket::bucket_point;
use crate::compile::{
    CompiledCondition, CompiledDenied, CompiledFlag, CompiledPolicy, CompiledRule, CompiledScope,
    CompiledServe, SCOPES_SHARED,
};
use crate::model::{ConsentMode, ConsentState};
use crate::names::same_bytes;
use crate::outcome::{Decision, ErrorCode, Outcome, Reason, Reject, RuleRef};
use crate::request::{Context, Request};

impl CompiledPolicy {
    /// Whether evaluating this request reads `source_ip`: a flag in scope for it does. A host
    /// can look the address up only then (in Envoy it is a property read, which costs about as
    /// much as reading a header); the request may leave `source_ip` empty until this says so.
    pub fn needs_source_ip(&self, req: &Request) -> bool {
        if !self.uses_source_ip {
            return false;
        }
        let (path, host) = (req.path_only(), self.scope_host(req));
        self.flags
            .iter()
            .any(|f| f.reads_source_ip && in_scope(&f.scope, req, path, &host))
    }

    /// The request's host as the scopes compare it, worked out only when a scope reads it.
    fn scope_host<'r>(&self, req: &'r Request) -> Cow<'r, str> {
        if self.scopes_read_host {
            req.host_only()
        } else {
            Cow::Borrowed("")
        }
    }

    /// Decides one request. The same request always gets the same outcome.
    pub fn evaluate(&self, req: &Request) -> Outcome<'_> {
        self.evaluate_into(req, Vec::new())
    }

    /// [`Self::evaluate`], with the decisions in `decisions` (cleared first): the filter hands
    /// back the list of its previous request, so that a request does not allocate one.
    pub fn evaluate_into<'p>(
        &'p self,
        req: &Request,
        mut decisions: Vec<Decision<'p>>,
    ) -> Outcome<'p> {
        decisions.clear();
        decisions.reserve(self.flags.len());
        let ctx = Context::new(self, req);
        let path = req.path_only();
        let host = self.scope_host(req);
        let consent_row = self.consent.as_ref().and_then(|c| {
            ctx.get(c.tenant_attribute)
                .and_then(|tenant| c.tenants.get(tenant))
        });
        let mut memo = ClauseMemo::new(self.clauses.len());
        let mut outcome = Outcome {
            decisions,
            ..Outcome::default()
        };
        // Bit i: flag i (of the first 64) is in scope, for the flags that share its `match`.
        let mut scoped = 0u64;
        for (flag_index, flag) in self.flags.iter().enumerate() {
            let applies = match flag.scope_as {
                Some(first) => first < SCOPES_SHARED && (scoped >> first) & 1 != 0,
                None => in_scope(&flag.scope, req, path, &host),
            };
            if flag_index < SCOPES_SHARED && applies {
                scoped |= 1 << flag_index;
            }
            if !applies {
                continue;
            }
            let decision =
                self.decide(flag_index, flag, &ctx, &mut memo, consent_row.map(|r| &**r));
            if decision.reason == Reason::ConsentDenied && decision.variation_index.is_none() {
                if outcome.reject.is_none() {
                    if let Some((_, CompiledDenied::Reject(status))) = flag.consent {
                        outcome.reject = Some(Reject {
                            flag_index,
                            status,
                            flag: &flag.key,
                            reason: Reason::ConsentDenied,
                        });
                    }
                }
            } else if outcome.route_decision.is_none() && decision.cluster.is_some() {
                outcome.route_decision = Some(outcome.decisions.len());
                outcome.cluster = decision.cluster;
            }
            outcome.decisions.push(decision);
        }
        if outcome.reject.is_some() {
            outcome.cluster = None;
            outcome.route_decision = None;
        }
        if let Some(key) = &self.settings.pseudonym_key {
            self.add_pseudonyms(key, &ctx, &mut outcome.decisions);
        }
        outcome
    }

    /// Each decision's keyed pseudonym of its unit's value. Flags that share a unit (most flags
    /// of a policy split by conversation or by user) hash its value once per request instead of
    /// once per flag: the large benchmark policy's 20 flags, all by conversation, made 20
    /// SipHash-2-4-128 runs per request. Without a key this is never called, so a policy
    /// without one pays nothing for it.
    fn add_pseudonyms(&self, key: &[u8; 16], ctx: &Context<'_, '_>, decisions: &mut [Decision]) {
        let mut memo = PseudonymMemo::default();
        for d in decisions {
            let Some(flag) = self.flags.get(d.flag_index) else {
                continue;
            };
            let (Some(attribute), Some(unit)) = (flag.unit, flag.unit_name.as_deref()) else {
                continue;
            };
            if let Some(id) = ctx.get(attribute).filter(|id| !id.is_empty()) {
                d.unit_pseudonym = Some(memo.get_or(attribute, || pseudonym(key, unit, id)));
            }
        }
    }

    fn decide<'p>(
        &'p self,
        flag_index: usize,
        flag: &'p CompiledFlag,
        ctx: &Context<'_, '_>,
        memo: &mut ClauseMemo,
        consent_row: Option<&[ConsentState]>,
    ) -> Decision<'p> {
        let unit_id = flag.unit.and_then(|u| ctx.get(u)).filter(|u| !u.is_empty());
        let mut d = Decision {
            flag_index,
            flag: &flag.key,
            variation_index: None,
            variation: None,
            cluster: None,
            reason: Reason::Default,
            error: None,
            rule: None,
            rule_index: None,
            bucket: None,
            attributes: &[],
            unit: flag.unit_name.as_deref(),
            // The raw id leaves the engine only when the policy asks for it.
            unit_id: unit_id
                .filter(|_| self.settings.expose_unit_ids)
                .map(str::to_string),
            // Filled in after the flags are decided, only with a key: see `add_pseudonyms`.
            unit_pseudonym: None,
        };

        // Consent comes first: nothing below can send an opted-out tenant to an AI route.
        if let (Some((class, denied)), Some(consent)) = (flag.consent, &self.consent) {
            let state = consent_row
                .and_then(|row| row.get(class).copied())
                .unwrap_or(ConsentState::Unset);
            let allowed = match consent.modes.get(class) {
                Some(ConsentMode::OptOut) => state != ConsentState::OptOut,
                Some(ConsentMode::OptIn) => state == ConsentState::OptIn,
                None => false,
            };
            let allowed = allowed && !self.awaiting.consent;
            if !allowed {
                d.reason = Reason::ConsentDenied;
                if self.awaiting.consent {
                    d.error = Some(ErrorCode::ProviderNotReady);
                }
                if let CompiledDenied::Serve(v) = denied {
                    self.serve_variation(flag, v, &mut d);
                }
                return d;
            }
        }

        if self.awaiting.policy {
            d.reason = Reason::Error;
            d.error = Some(ErrorCode::ProviderNotReady);
            self.serve_variation(flag, flag.off_variation, &mut d);
            return d;
        }

        if !flag.enabled {
            d.reason = Reason::Disabled;
            self.serve_variation(flag, flag.off_variation, &mut d);
            return d;
        }

        for o in &flag.overrides {
            if ctx.get(o.attribute).is_some_and(|v| o.values.contains(v)) {
                d.reason = Reason::TargetingMatch;
                self.serve_variation(flag, o.variation, &mut d);
                return d;
            }
        }

        for (i, rule) in flag.rules.iter().enumerate() {
            if rule
                .conditions
                .iter()
                .all(|c| self.condition_holds(c, ctx, memo))
            {
                self.serve(
                    flag,
                    &rule.serve,
                    Some((i, rule)),
                    Reason::TargetingMatch,
                    unit_id,
                    &mut d,
                );
                return d;
            }
        }

        self.serve(flag, &flag.default, None, Reason::Default, unit_id, &mut d);
        d
    }

    /// Serves a fixed variation with `fixed_reason`, or a split with `SPLIT`; a split without
    /// the unit serves `off_variation` with `ERROR` / `TARGETING_KEY_MISSING`.
    fn serve<'p>(
        &'p self,
        flag: &'p CompiledFlag,
        serve: &'p CompiledServe,
        rule: Option<(usize, &'p CompiledRule)>,
        fixed_reason: Reason,
        unit_id: Option<&str>,
        d: &mut Decision<'p>,
    ) {
        match serve {
            CompiledServe::Variation(v) => {
                d.reason = fixed_reason;
                set_rule(rule, d);
                self.serve_variation(flag, *v, d);
            }
            CompiledServe::Split(split) => match unit_id {
                Some(unit) => {
                    let point = bucket_point(&flag.salt, unit, split.total);
                    d.reason = Reason::Split;
                    set_rule(rule, d);
                    d.bucket = Some(point);
                    self.serve_variation(flag, split.pick(point), d);
                }
                None => {
                    d.reason = Reason::Error;
                    d.error = Some(ErrorCode::TargetingKeyMissing);
                    self.serve_variation(flag, flag.off_variation, d);
                }
            },
        }
    }

    fn serve_variation<'p>(&'p self, flag: &'p CompiledFlag, v: usize, d: &mut Decision<'p>) {
        if let Some(variation) = flag.variations.get(v) {
            d.variation_index = Some(v);
            d.variation = Some(&variation.name);
            d.cluster = variation.cluster.as_deref();
            d.attributes = &variation.attributes;
        }
    }

    fn condition_holds(
        &self,
        condition: &CompiledCondition,
        ctx: &Context<'_, '_>,
        memo: &mut ClauseMemo,
    ) -> bool {
        match condition {
            CompiledCondition::Clause(id) => self.clause_holds(*id, ctx, memo),
            CompiledCondition::Segment(s) => self
                .segments
                .get(*s)
                .is_some_and(|ids| ids.iter().all(|id| self.clause_holds(*id, ctx, memo))),
        }
    }

    fn clause_holds(&self, id: usize, ctx: &Context<'_, '_>, memo: &mut ClauseMemo) -> bool {
        if let Some(known) = memo.get(id) {
            return known;
        }
        let result = self
            .clauses
            .get(id)
            .is_some_and(|c| c.holds(ctx.get(c.attribute)));
        memo.set(id, result);
        result
    }
}

/// Records which rule decided (`None`: an override or the default): as the public reference
/// and as the index renderers use to find the rule's fragments.
fn set_rule<'p>(rule: Option<(usize, &'p CompiledRule)>, d: &mut Decision<'p>) {
    d.rule_index = rule.map(|(i, _)| i);
    d.rule = rule.map(|(i, r)| RuleRef::of(r.name.as_deref(), i));
}

/// Per-request results of interned clauses. The first 64 are two bit sets, so a policy of up
/// to 64 distinct clauses (the example has 3) evaluates without allocating for them; the
/// rest take a byte each (0 untested, 1 false, 2 true).
struct ClauseMemo {
    tested: u64,
    held: u64,
    more: Vec<u8>,
}

impl ClauseMemo {
    const BITS: usize = u64::BITS as usize;

    fn new(n: usize) -> Self {
        ClauseMemo {
            tested: 0,
            held: 0,
            // `Vec::new` does not allocate.
            more: if n > Self::BITS {
                vec![0; n - Self::BITS]
            } else {
                Vec::new()
            },
        }
    }

    fn get(&self, id: usize) -> Option<bool> {
        if id < Self::BITS {
            let bit = 1u64 << id;
            return (self.tested & bit != 0).then_some(self.held & bit != 0);
        }
        match self.more.get(id - Self::BITS) {
            Some(1) => Some(false),
            Some(2) => Some(true),
            _ => None,
        }
    }

    fn set(&mut self, id: usize, value: bool) {
        if id < Self::BITS {
            let bit = 1u64 << id;
            self.tested |= bit;
            if value {
                self.held |= bit;
            }
        } else if let Some(slot) = self.more.get_mut(id - Self::BITS) {
            *slot = 1 + u8::from(value);
        }
    }
}

/// `SipHash-2-4-128(key, unit_name ":" unit_id)`: a keyed PRF, so without the key a
/// pseudonym cannot be reversed by hashing candidate ids.
fn pseudonym(key: &[u8; 16], unit: &str, id: &str) -> u128 {
    use std::hash::Hasher;
    let mut h = siphasher::sip128::SipHasher24::new_with_key(key);
    h.write(unit.as_bytes());
    h.write(b":");
    h.write(id.as_bytes());
    siphasher::sip128::Hasher128::finish128(&h).as_u128()
}

/// One request's pseudonyms by unit attribute. A request's units are few; a fifth distinct unit
/// is hashed each time it is asked for.
#[derive(Default)]
struct PseudonymMemo {
    slots: [Option<(usize, u128)>; 4],
}

impl PseudonymMemo {
    /// The pseudonym for the unit `attribute`, computed by `hash` the first time it is asked.
    fn get_or(&mut self, attribute: usize, hash: impl FnOnce() -> u128) -> u128 {
        for slot in &mut self.slots {
            match slot {
                Some((a, p)) if *a == attribute => return *p,
                Some(_) => {}
                None => {
                    let p = hash();
                    *slot = Some((attribute, p));
                    return p;
                }
            }
        }
        hash()
    }
}

fn in_scope(scope: &CompiledScope, req: &Request, path: &str, host: &str) -> bool {
    scope
        .path_prefix
        .as_deref()
        .is_none_or(|p| starts_with(path, p))
        && scope
            .host
            .as_deref()
            .is_none_or(|h| same_bytes(h.as_bytes(), host.as_bytes()))
        && scope
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
        && scope
            .header_present
            .as_deref()
            .is_none_or(|h| req.header(h).is_some())
}

/// `path.starts_with(prefix)`, compared a word at a time: every flag with a `path_prefix`
/// tests it on every request, and `starts_with` calls `memcmp`, which in wasm32-wasip1's libc
/// goes byte by byte (about 300 wasm instructions per request with the example policy).
fn starts_with(path: &str, prefix: &str) -> bool {
    path.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| same_bytes(head, prefix.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::{in_scope, starts_with, ClauseMemo};

    #[test]
    fn prefixes_are_tested_as_starts_with() {
        let paths = [
            "",
            "/",
            "/v1",
            "/v1/chat/completions",
            "/v1/chat/completions/x",
            "/v2/chat/completions",
        ];
        for path in paths {
            for prefix in paths.iter().chain(&["/v1/chat/completionz", "/v1/chat/"]) {
                assert_eq!(
                    starts_with(path, prefix),
                    path.starts_with(prefix),
                    "{path} {prefix}"
                );
            }
        }
    }

    #[test]
    fn clause_memo_remembers_each_clause_on_both_sides_of_the_bit_sets() {
        let mut memo = ClauseMemo::new(70);
        let ids = [0, 1, 62, 63, 64, 65, 69];
        for id in ids {
            assert_eq!(memo.get(id), None, "clause {id} starts untested");
        }
        for (n, id) in ids.into_iter().enumerate() {
            memo.set(id, n % 2 == 0);
        }
        for (n, id) in ids.into_iter().enumerate() {
            assert_eq!(memo.get(id), Some(n % 2 == 0), "clause {id}");
        }
        // Untouched neighbours stay untested.
        assert_eq!(memo.get(2), None);
        assert_eq!(memo.get(66), None);
        // An id past the policy's clauses is ignored, never a panic.
        memo.set(70, true);
        assert_eq!(memo.get(70), None);
    }

    #[test]
    fn a_small_policy_memo_allocates_nothing() {
        assert_eq!(ClauseMemo::new(64).more.capacity(), 0);
        assert_eq!(ClauseMemo::new(65).more.len(), 1);
    }

    /// Flags that share a `match` take the first one's answer; past the first 64 flags a new
    /// `match` is tested on its own. Each request decides exactly the flags whose own scope
    /// holds.
    #[test]
    fn flags_sharing_a_scope_decide_as_each_scope_reads() {
        let scopes = [
            serde_json::json!({"path_prefix": "/a"}),
            serde_json::json!({"path_prefix": "/b"}),
            serde_json::json!({"path_prefix": "/a", "method": "POST"}),
            serde_json::json!({}),
        ];
        let flags: Vec<_> = (0..80)
            .map(|i| {
                // Past flag 64, one scope not seen before.
                let scope = if i == 70 {
                    serde_json::json!({"path_prefix": "/a/x"})
                } else {
                    scopes[i % 4].clone()
                };
                serde_json::json!({
                    "key": format!("f{i}"), "match": scope,
                    "variations": {"on": {}}, "off_variation": "on", "default": {"serve": "on"}
                })
            })
            .collect();
        let doc = serde_json::json!({"version": "1", "flags": flags});
        let policy = crate::load(&doc.to_string()).unwrap();
        assert!(policy.flags.iter().filter(|f| f.scope_as.is_some()).count() >= 70);
        for (method, path) in [
            ("GET", "/a/x"),
            ("POST", "/a"),
            ("POST", "/b"),
            ("GET", "/c"),
        ] {
            let req = crate::Request::from_json(
                &serde_json::json!({"method": method, "path": path}).to_string(),
            )
            .unwrap();
            let (path, host) = (req.path_only(), req.host_only());
            let expected: Vec<usize> = (0..policy.flags.len())
                .filter(|&i| in_scope(&policy.flags[i].scope, &req, path, &host))
                .collect();
            let decided: Vec<usize> = policy
                .evaluate(&req)
                .decisions
                .iter()
                .map(|d| d.flag_index)
                .collect();
            assert_eq!(decided, expected, "{method} {path}");
        }
    }
}
