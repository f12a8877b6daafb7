//! `switchyard compare OLD NEW`: which requests a policy change would serve differently, before
//! it is pushed. For each flag, how many in-scope requests change variation and from what to
//! what; how many change route or start or stop being rejected.
//!
//! The point is stickiness: raising a canary's weight with the total kept should only move
//! units one way (into the canary). Requests that move both ways between two variations, as
//! reordering a split's entries or changing its salt does, are a unit flipping by accident,
//! and the report says so for each flag where it happens.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::compile::CompiledPolicy;
use crate::outcome::{Outcome, Reason};
use crate::request::Request;

/// What a request got from one flag, for comparing.
const OUT_OF_SCOPE: &str = "(out of scope)";
const NO_SUCH_FLAG: &str = "(no such flag)";
const REJECTED: &str = "(rejected)";

/// The differences between two policies' answers over the same requests.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    old_version: String,
    new_version: String,
    requests: u64,
    /// Flag keys in the new policy's order, then those only the old one has.
    flags: Vec<FlagComparison>,
    route_changed: u64,
    newly_rejected: u64,
    no_longer_rejected: u64,
}

#[derive(Debug, Clone, Default)]
struct FlagComparison {
    key: String,
    /// What each policy serves when it makes no decision for this flag: out of scope, or no
    /// such flag (known when the comparison is made, not looked up per request).
    old_absent: &'static str,
    new_absent: &'static str,
    /// Requests either policy had this flag in scope for.
    in_scope: u64,
    /// (from, to) → requests, for the requests that changed.
    moves: BTreeMap<(String, String), u64>,
}

impl FlagComparison {
    fn changed(&self) -> u64 {
        self.moves.values().sum()
    }

    /// Pairs of variations that requests moved between in both directions.
    fn both_ways(&self) -> Vec<(&str, &str)> {
        self.moves
            .keys()
            .filter(|(from, to)| from < to && self.moves.contains_key(&(to.clone(), from.clone())))
            .map(|(from, to)| (from.as_str(), to.as_str()))
            .collect()
    }
}

/// What `outcome` served for flag `key`, else `absent` (why nothing).
fn served<'o>(outcome: &'o Outcome<'_>, key: &str, absent: &'static str) -> &'o str {
    match outcome.decisions.iter().find(|d| d.flag == key) {
        Some(d) => match d.variation {
            Some(v) => v,
            None if d.reason == Reason::ConsentDenied => REJECTED,
            None => OUT_OF_SCOPE,
        },
        None => absent,
    }
}

/// What a policy serves for flag `key` when it makes no decision for it.
fn absent(policy: &CompiledPolicy, key: &str) -> &'static str {
    if policy.flag_infos.iter().any(|f| f.key == key) {
        OUT_OF_SCOPE
    } else {
        NO_SUCH_FLAG
    }
}

impl Comparison {
    /// Evaluates every request with both policies and counts the differences.
    pub fn run<'r>(
        old: &CompiledPolicy,
        new: &CompiledPolicy,
        requests: impl IntoIterator<Item = &'r Request<'r>>,
    ) -> Comparison {
        let mut comparison = Comparison::new(old, new);
        for request in requests {
            comparison.add(old, new, request);
        }
        comparison
    }

    /// An empty comparison of these two policies.
    pub fn new(old: &CompiledPolicy, new: &CompiledPolicy) -> Comparison {
        let mut keys: Vec<String> = new.flag_infos.iter().map(|f| f.key.clone()).collect();
        for f in &old.flag_infos {
            if !keys.contains(&f.key) {
                keys.push(f.key.clone());
            }
        }
        Comparison {
            old_version: old.version.clone(),
            new_version: new.version.clone(),
            flags: keys
                .into_iter()
                .map(|key| FlagComparison {
                    old_absent: absent(old, &key),
                    new_absent: absent(new, &key),
                    key,
                    ..FlagComparison::default()
                })
                .collect(),
            ..Comparison::default()
        }
    }

    /// Evaluates one request with both policies (the ones this comparison was made for) and
    /// counts the differences.
    pub fn add(&mut self, old: &CompiledPolicy, new: &CompiledPolicy, request: &Request<'_>) {
        let (before, after) = (old.evaluate(request), new.evaluate(request));
        self.requests += 1;
        for flag in &mut self.flags {
            let (from, to) = (
                served(&before, &flag.key, flag.old_absent),
                served(&after, &flag.key, flag.new_absent),
            );
            let scoped = |s: &str| s != OUT_OF_SCOPE && s != NO_SUCH_FLAG;
            if scoped(from) || scoped(to) {
                flag.in_scope += 1;
            }
            if from != to {
                *flag
                    .moves
                    .entry((from.to_string(), to.to_string()))
                    .or_insert(0) += 1;
            }
        }
        match (before.reject.is_some(), after.reject.is_some()) {
            (false, true) => self.newly_rejected += 1,
            (true, false) => self.no_longer_rejected += 1,
            (false, false) if before.cluster != after.cluster => self.route_changed += 1,
            _ => {}
        }
    }

    /// Requests compared.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Requests whose answer changed for `flag` (0 for a flag neither policy has).
    pub fn changed(&self, flag: &str) -> u64 {
        self.flags
            .iter()
            .find(|f| f.key == flag)
            .map_or(0, FlagComparison::changed)
    }

    /// Requests of `flag` that moved from `from` to `to`.
    pub fn moved(&self, flag: &str, from: &str, to: &str) -> u64 {
        self.flags
            .iter()
            .find(|f| f.key == flag)
            .and_then(|f| f.moves.get(&(from.to_string(), to.to_string())))
            .copied()
            .unwrap_or(0)
    }

    /// Flags where requests moved both ways between two variations: `(flag, a, b)`.
    pub fn both_ways(&self) -> Vec<(&str, &str, &str)> {
        self.flags
            .iter()
            .flat_map(|f| {
                f.both_ways()
                    .into_iter()
                    .map(move |(a, b)| (f.key.as_str(), a, b))
            })
            .collect()
    }

    /// Requests forwarded by both policies to different clusters.
    pub fn route_changed(&self) -> u64 {
        self.route_changed
    }

    /// Requests the new policy rejects and the old one forwarded, and the other way round.
    pub fn rejects_changed(&self) -> (u64, u64) {
        (self.newly_rejected, self.no_longer_rejected)
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let pct = |n: u64, of: u64| crate::simulate::percent(n, of);
        let mut out = format!(
            "policy {} -> {}: {} requests compared\n",
            self.old_version, self.new_version, self.requests
        );
        for flag in &self.flags {
            let changed = flag.changed();
            let _ = write!(
                out,
                "\n{}: {} of {} in-scope requests change ({:.2}%)",
                flag.key,
                changed,
                flag.in_scope,
                pct(changed, flag.in_scope)
            );
            for ((from, to), n) in &flag.moves {
                let _ = write!(
                    out,
                    "\n  {from} -> {to}: {n} ({:.2}%)",
                    pct(*n, flag.in_scope)
                );
            }
            for (a, b) in flag.both_ways() {
                let _ = write!(
                    out,
                    "\n  WARNING: requests move both ways between {a} and {b}: units flip, as \
                     when a split's entries are reordered or its salt changes; raising one \
                     weight with the total kept moves them one way only"
                );
            }
        }
        let _ = write!(
            out,
            "\n\nroute changed: {} ({:.2}%)\nnewly rejected: {}\nno longer rejected: {}\n",
            self.route_changed,
            pct(self.route_changed, self.requests),
            self.newly_rejected,
            self.no_longer_rejected
        );
        out
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "old_version": self.old_version,
            "new_version": self.new_version,
            "requests": self.requests,
            "flags": self.flags.iter().map(|f| json!({
                "flag": f.key,
                "in_scope": f.in_scope,
                "changed": f.changed(),
                "moves": f.moves.iter().map(|((from, to), n)| json!({
                    "from": from, "to": to, "count": n,
                })).collect::<Vec<_>>(),
                "both_ways": f.both_ways().iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "route_changed": self.route_changed,
            "newly_rejected": self.newly_rejected,
            "no_longer_rejected": self.no_longer_rejected,
        })
    }
}

/// Compares two policies over `units` synthetic requests made from both (half aimed at each
/// one's flags, so a flag only one of them has is reached too), with `seed`.
pub fn compare(
    old_json: &str,
    new_json: &str,
    units: usize,
    seed: u64,
) -> Result<Comparison, (&'static str, crate::PolicyErrors)> {
    let old = crate::load(old_json).map_err(|e| ("OLD", e))?;
    let new = crate::load(new_json).map_err(|e| ("NEW", e))?;
    let requests = synthetic_requests(old_json, new_json, units, seed)?;
    Ok(Comparison::run(&old, &new, &requests))
}

/// `units` synthetic requests for comparing two policies: half aimed at each one's flags (as
/// `simulate` makes them), so a flag only one of them has is reached too.
pub fn synthetic_requests(
    old_json: &str,
    new_json: &str,
    units: usize,
    seed: u64,
) -> Result<Vec<Request<'static>>, (&'static str, crate::PolicyErrors)> {
    let half = units / 2;
    let mut requests = crate::simulate::synthetic_requests(new_json, units - half, seed)
        .map_err(|e| ("NEW", e))?;
    requests.extend(
        crate::simulate::synthetic_requests(old_json, half, seed.wrapping_add(1))
            .map_err(|e| ("OLD", e))?,
    );
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/support-copilot/policy.json");
    const FLAG: &str = "support_answer_model_route";

    fn changed(f: impl FnOnce(&mut Value)) -> String {
        let mut p: Value = serde_json::from_str(EXAMPLE).unwrap();
        f(&mut p);
        p.to_string()
    }

    #[test]
    fn the_same_policy_changes_nothing() {
        let c = compare(EXAMPLE, EXAMPLE, 2000, 1).unwrap();
        assert_eq!(c.requests(), 2000);
        assert_eq!(c.changed(FLAG), 0);
        assert_eq!(c.changed("agent_tools"), 0);
        assert_eq!(c.route_changed(), 0);
        assert_eq!(c.rejects_changed(), (0, 0));
        assert!(c.both_ways().is_empty());
    }

    #[test]
    fn raising_the_canary_moves_units_one_way_only() {
        let new = changed(
            |p| p["flags"][0]["rules"][2]["split"] = json!([{"variation": "candidate", "weight": 20}, {"variation": "control", "weight": 80}]),
        );
        let c = compare(EXAMPLE, &new, 4000, 1).unwrap();
        assert!(c.moved(FLAG, "control", "candidate") > 0, "{}", c.table());
        assert_eq!(c.moved(FLAG, "candidate", "control"), 0, "{}", c.table());
        assert!(c.both_ways().is_empty());
        assert!(c.route_changed() > 0);
    }

    #[test]
    fn reordering_a_split_flips_units_both_ways_and_is_warned() {
        let new = changed(
            |p| p["flags"][0]["rules"][2]["split"] = json!([{"variation": "control", "weight": 95}, {"variation": "candidate", "weight": 5}]),
        );
        let c = compare(EXAMPLE, &new, 4000, 1).unwrap();
        assert!(c.moved(FLAG, "control", "candidate") > 0, "{}", c.table());
        assert!(c.moved(FLAG, "candidate", "control") > 0, "{}", c.table());
        assert_eq!(c.both_ways(), [(FLAG, "candidate", "control")]);
        assert!(c
            .table()
            .contains("WARNING: requests move both ways between candidate and control"));
        assert_eq!(
            c.to_json()["flags"][0]["both_ways"],
            json!([["candidate", "control"]])
        );
    }

    #[test]
    fn an_opt_out_and_a_removed_flag_show() {
        let new = changed(|p| {
            p["consent"]["tenants"]["acme"] = json!({"support_copilot":
                {"state": "opt_out", "actor": "admin@acme.example", "at": "2026-11-22T10:00:00Z"}});
            p["flags"].as_array_mut().unwrap().pop();
        });
        let c = compare(EXAMPLE, &new, 4000, 1).unwrap();
        assert!(c.moved(FLAG, "candidate", "fallback") > 0, "{}", c.table());
        assert_eq!(c.moved(FLAG, "fallback", "candidate"), 0);
        // agent_tools is gone: its rejects stop, its variations become "no such flag".
        assert!(
            c.moved("agent_tools", REJECTED, NO_SUCH_FLAG) > 0,
            "{}",
            c.table()
        );
        assert!(c.rejects_changed().1 > 0);
        assert_eq!(c.rejects_changed().0, 0);
    }
}
