//! `switchyard simulate`: what a policy does to a population of requests, before it is pushed.
//!
//! Requests come from a file (the `switchyard eval` input format) or are made up from the policy
//! itself ([`synthetic_requests`]): request `i` is aimed at flag `i mod F`'s scope (its path
//! prefix, host, method and required header), carries a fresh random id for every flag's
//! assignment unit (one in twenty takes a unit value the policy names, so unit overrides show),
//! and for every other attribute a value the policy mentions (in clauses, overrides or consent
//! tenants; a value that satisfies the clause's operator, such as a version just above a
//! `semver_gt` bound, an address inside a `cidr` network, a string a `matches` pattern matches),
//! an unknown value, or none.
//! Everything is drawn from a seeded generator: the same policy, count and seed give the same
//! requests and the same table.
//!
//! A [`Report`] counts, per flag, every (rule, variation, reason, error) it decided with, each as
//! a share of the requests in that flag's scope, plus consent rejects, routes and requests that
//! no flag touched.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::compile::CompiledPolicy;
use crate::error::PolicyErrors;
use crate::model::{Builtin, Clause, Condition, Op, PolicyDoc, Source};
use crate::outcome::{Outcome, Reason};
use crate::request::Request;

/// Synthetic requests when no count is given.
pub const DEFAULT_UNITS: usize = 10_000;
/// The generator's seed when none is given.
pub const DEFAULT_SEED: u64 = 1;

/// SplitMix64: small, fast, and the same on every platform (native and wasm32).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let i = self.below(items.len());
        items.get(i)
    }
}

/// Values the policy mentions, per attribute name, in document order without repeats. The
/// set beside each list keeps adding linear: a clause may list 100,000 values.
#[derive(Debug, Default)]
struct KnownValues(Vec<(String, Vec<String>, HashSet<String>)>);

impl KnownValues {
    fn add(&mut self, attribute: &str, value: String) {
        match self.0.iter_mut().find(|(a, _, _)| a == attribute) {
            Some((_, _, seen)) if seen.contains(&value) => {}
            Some((_, values, seen)) => {
                seen.insert(value.clone());
                values.push(value);
            }
            None => self.0.push((
                attribute.to_string(),
                vec![value.clone()],
                HashSet::from([value]),
            )),
        }
    }

    fn get(&self, attribute: &str) -> &[String] {
        self.0
            .iter()
            .find(|(a, _, _)| a == attribute)
            .map(|(_, v, _)| v.as_slice())
            .unwrap_or(&[])
    }

    fn clause(&mut self, clause: &Clause) {
        for v in samples(clause.op, &clause.values) {
            self.add(&clause.attribute, v);
        }
    }
}

/// Values that satisfy (or sit right at the edge of) one clause.
fn samples(op: Op, values: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for v in values {
        match op {
            Op::In | Op::NotIn => out.push(v.clone()),
            Op::StartsWith => out.push(format!("{v}sim")),
            Op::EndsWith => out.push(format!("sim{v}")),
            Op::Contains => out.push(format!("sim{v}sim")),
            Op::Matches => out.extend(crate::regex_examples::examples(v)),
            Op::Exists => {}
            Op::Lt | Op::Lte | Op::Gt | Op::Gte => {
                if let Ok(n) = v.trim().parse::<f64>() {
                    for x in [n - 1.0, n, n + 1.0] {
                        out.push(number_text(x));
                    }
                }
            }
            Op::SemverLt | Op::SemverLte | Op::SemverGt | Op::SemverGte | Op::SemverEq => {
                // As the operator reads it (a leading `v` accepted).
                if let Some(ver) = crate::matching::parse_semver(v) {
                    out.push(ver.to_string());
                    // The bound's patch may be u64::MAX: then there is nothing above it.
                    if let Some(patch) = ver.patch.checked_add(1) {
                        out.push(semver::Version::new(ver.major, ver.minor, patch).to_string());
                    }
                    let below = if ver.patch > 0 {
                        Some(semver::Version::new(ver.major, ver.minor, ver.patch - 1))
                    } else if ver.minor > 0 {
                        Some(semver::Version::new(ver.major, ver.minor - 1, 0))
                    } else if ver.major > 0 {
                        Some(semver::Version::new(ver.major - 1, 0, 0))
                    } else {
                        None
                    };
                    out.extend(below.map(|b| b.to_string()));
                }
            }
            Op::Cidr => {
                if let Ok(net) = v.trim().parse::<ipnet::IpNet>() {
                    out.push(net.network().to_string());
                }
            }
        }
    }
    out
}

fn number_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Values never named by a policy, so misses show in the table.
const UNKNOWN: [&str; 2] = ["sim-unknown-1", "sim-unknown-2"];

/// Makes `units` requests from the policy's own attributes, scopes and values (see the module
/// documentation). The policy must be valid.
pub fn synthetic_requests(
    policy_json: &str,
    units: usize,
    seed: u64,
) -> Result<Vec<Request<'static>>, PolicyErrors> {
    crate::load(policy_json)?;
    let doc = match crate::document::parse(policy_json) {
        (Some(doc), errors) if errors.is_empty() => doc,
        (_, errors) => return Err(errors),
    };
    Ok(Synthesizer::new(&doc).requests(units, seed))
}

struct Synthesizer<'d> {
    doc: &'d PolicyDoc,
    known: KnownValues,
    /// Attribute names that some flag buckets by.
    units: Vec<&'d str>,
}

impl<'d> Synthesizer<'d> {
    fn new(doc: &'d PolicyDoc) -> Self {
        let mut known = KnownValues::default();
        if let Some(consent) = &doc.consent {
            for (tenant, _) in &consent.tenants {
                known.add(&consent.tenant_attribute, tenant.clone());
            }
        }
        for (_, clauses) in &doc.segments {
            for c in clauses {
                known.clause(c);
            }
        }
        let mut units = Vec::new();
        for flag in &doc.flags {
            for o in &flag.overrides {
                for v in &o.values {
                    known.add(&o.attribute, v.clone());
                }
            }
            for rule in &flag.rules {
                for cond in &rule.when {
                    if let Condition::Clause(c) = cond {
                        known.clause(c);
                    }
                }
            }
            if let Some(u) = flag.unit.as_deref() {
                if !units.contains(&u) {
                    units.push(u);
                }
            }
        }
        Synthesizer { doc, known, units }
    }

    fn requests(&self, units: usize, seed: u64) -> Vec<Request<'static>> {
        let mut rng = Rng(seed);
        (0..units).map(|i| self.request(i, &mut rng)).collect()
    }

    fn request(&self, i: usize, rng: &mut Rng) -> Request<'static> {
        let flags = &self.doc.flags;
        let scope = match flags.len() {
            0 => None,
            n => flags.get(i % n).map(|f| &f.scope),
        };
        let scope = scope.cloned().unwrap_or_default();

        let base = scope.path_prefix.clone().unwrap_or_else(|| "/".to_string());
        let mut paths: Vec<String> = self
            .known
            .get("path")
            .iter()
            .filter(|p| p.starts_with(&base))
            .cloned()
            .collect();
        paths.push(base.clone());
        let path = rng.pick(&paths).cloned().unwrap_or(base);
        let host = scope
            .host
            .clone()
            .unwrap_or_else(|| self.builtin_value(rng, "host", "api.example"));
        let method = scope
            .method
            .clone()
            .unwrap_or_else(|| self.builtin_value(rng, "method", "POST"));
        let source_ip = self.builtin_value(rng, "source_ip", "198.51.100.7");

        let mut headers: Vec<(String, String)> = Vec::new();
        let mut cookies: Vec<String> = Vec::new();
        let mut query: Vec<String> = Vec::new();
        for (name, source) in &self.doc.context {
            let Some(value) = self.attribute_value(rng, name) else {
                continue;
            };
            match source {
                Source::Header(h) => headers.push((h.clone(), value)),
                Source::Cookie(c) => cookies.push(format!(
                    "{}={}",
                    c,
                    utf8_percent_encode(&value, NON_ALPHANUMERIC)
                )),
                Source::Query(q) => query.push(format!(
                    "{}={}",
                    utf8_percent_encode(q, NON_ALPHANUMERIC),
                    utf8_percent_encode(&value, NON_ALPHANUMERIC)
                )),
            }
        }
        if let Some(h) = &scope.header_present {
            if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(h)) {
                headers.push((h.clone(), "1".to_string()));
            }
        }
        if !cookies.is_empty() {
            headers.push(("cookie".to_string(), cookies.join("; ")));
        }
        let path = if query.is_empty() {
            path
        } else {
            format!("{path}?{}", query.join("&"))
        };
        Request {
            method: method.into(),
            path: path.into(),
            host: host.into(),
            source_ip: source_ip.into(),
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }

    /// A built-in attribute the flag's scope does not fix: a value the policy names, or the
    /// usual one.
    fn builtin_value(&self, rng: &mut Rng, name: &str, usual: &str) -> String {
        debug_assert!(Builtin::ALL.iter().any(|(n, _)| *n == name));
        let known = self.known.get(name);
        let i = rng.below(known.len() + 1);
        known.get(i).cloned().unwrap_or_else(|| usual.to_string())
    }

    fn attribute_value(&self, rng: &mut Rng, name: &str) -> Option<String> {
        let known = self.known.get(name);
        if self.units.contains(&name) {
            // Mostly new units; one in twenty a unit the policy names (an override list).
            if !known.is_empty() && rng.below(20) == 0 {
                return rng.pick(known).cloned();
            }
            return Some(format!("sim-{:016x}", rng.next()));
        }
        let roll = rng.below(8);
        if known.is_empty() {
            return match roll {
                0 | 1 => None,
                _ => rng.pick(&UNKNOWN).map(|s| s.to_string()),
            };
        }
        match roll {
            0 => None,
            1 => rng.pick(&UNKNOWN).map(|s| s.to_string()),
            _ => rng.pick(known).cloned(),
        }
    }
}

/// Where in a flag's evaluation a decision was made; orders the table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Consent,
    Disabled,
    Override,
    Rule(usize),
    Default,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RowKey {
    flag: usize,
    stage: Stage,
    /// Variation index (document order); `None` for a consent reject.
    variation: Option<usize>,
    reason: usize,
}

/// One line of the table: how many of a flag's in-scope requests got this
/// (rule, variation, reason, error).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub flag: String,
    /// The rule as `switchyard eval` names it (its name, else its index); `None` where no rule
    /// decided.
    pub rule: Option<Value>,
    /// A label for the table: the rule's name, `rules[i]`, `(override)`, `(default)`,
    /// `(consent)`, `(kill switch)` or `(no unit)`.
    pub rule_label: String,
    /// `None` for a consent reject.
    pub variation: Option<String>,
    pub cluster: Option<String>,
    pub reason: &'static str,
    pub error: Option<&'static str>,
    pub count: u64,
    /// Share of the flag's in-scope requests, 0–100.
    pub percent: f64,
}

/// Counts of what a policy decided for a set of requests.
#[derive(Debug, Clone)]
pub struct Report {
    version: String,
    environment: Option<String>,
    /// The generator's seed, for synthetic requests.
    seed: Option<u64>,
    flags: Vec<FlagSummary>,
    requests: u64,
    rows: BTreeMap<RowKey, u64>,
    /// (flag index, status) → rejected requests.
    rejects: BTreeMap<(usize, u16), u64>,
    /// Cluster → requests routed there, in first-seen order.
    routes: Vec<(String, u64)>,
    no_route: u64,
    untouched: u64,
}

#[derive(Debug, Clone)]
struct FlagSummary {
    key: String,
    variations: Vec<(String, Option<String>)>,
    rule_names: Vec<Option<String>>,
    in_scope: u64,
    consent_denied: u64,
    /// (status) when the flag rejects on consent denial.
    reject_status: Option<u16>,
}

pub(crate) fn percent(count: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        count as f64 * 100.0 / of as f64
    }
}

fn reason_index(r: Reason) -> usize {
    Reason::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

impl Report {
    /// An empty report for this policy.
    pub fn new(policy: &CompiledPolicy) -> Report {
        let flags = policy
            .flags
            .iter()
            .map(|f| FlagSummary {
                key: f.key.clone(),
                variations: f
                    .variations
                    .iter()
                    .map(|v| (v.name.clone(), v.cluster.clone()))
                    .collect(),
                rule_names: f.rules.iter().map(|r| r.name.clone()).collect(),
                in_scope: 0,
                consent_denied: 0,
                reject_status: match f.consent {
                    Some((_, crate::compile::CompiledDenied::Reject(s))) => Some(s),
                    _ => None,
                },
            })
            .collect();
        Report {
            version: policy.version.clone(),
            environment: policy.environment.clone(),
            seed: None,
            flags,
            requests: 0,
            rows: BTreeMap::new(),
            rejects: BTreeMap::new(),
            routes: Vec::new(),
            no_route: 0,
            untouched: 0,
        }
    }

    /// Evaluates every request and counts the outcomes.
    pub fn run<'r>(
        policy: &CompiledPolicy,
        requests: impl IntoIterator<Item = &'r Request<'r>>,
    ) -> Report {
        let mut report = Report::new(policy);
        for req in requests {
            report.add(&policy.evaluate(req));
        }
        report
    }

    /// Counts one outcome (from the policy this report was made for).
    pub fn add(&mut self, outcome: &Outcome<'_>) {
        self.requests += 1;
        if outcome.decisions.is_empty() {
            self.untouched += 1;
        }
        for d in &outcome.decisions {
            let Some(flag) = self.flags.get_mut(d.flag_index) else {
                continue;
            };
            flag.in_scope += 1;
            let stage = match (d.reason, d.rule_index) {
                (Reason::ConsentDenied, _) => {
                    flag.consent_denied += 1;
                    Stage::Consent
                }
                (Reason::Disabled, _) => Stage::Disabled,
                (Reason::Error, _) => Stage::Error,
                (_, Some(i)) => Stage::Rule(i),
                (Reason::TargetingMatch, None) => Stage::Override,
                (_, None) => Stage::Default,
            };
            let key = RowKey {
                flag: d.flag_index,
                stage,
                variation: d.variation_index,
                reason: reason_index(d.reason),
            };
            *self.rows.entry(key).or_insert(0) += 1;
        }
        if let Some(reject) = &outcome.reject {
            let flag = outcome
                .decisions
                .iter()
                .find(|d| d.flag == reject.flag)
                .map_or(0, |d| d.flag_index);
            *self.rejects.entry((flag, reject.status)).or_insert(0) += 1;
        } else {
            match outcome.cluster {
                Some(c) => match self.routes.iter_mut().find(|(name, _)| name == c) {
                    Some((_, n)) => *n += 1,
                    None => self.routes.push((c.to_string(), 1)),
                },
                None => self.no_route += 1,
            }
        }
    }

    /// Requests counted.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Requests that got a consent reject (a local reply).
    pub fn rejected(&self) -> u64 {
        self.rejects.values().sum()
    }

    /// Requests no flag was in scope for.
    pub fn untouched(&self) -> u64 {
        self.untouched
    }

    /// Requests in each flag's scope, in document order.
    pub fn in_scope(&self) -> Vec<(&str, u64)> {
        self.flags
            .iter()
            .map(|f| (f.key.as_str(), f.in_scope))
            .collect()
    }

    /// Every (flag, rule, variation, reason) counted, flag by flag in document order, then in
    /// evaluation order (consent, kill switch, overrides, rules, default, errors).
    pub fn rows(&self) -> Vec<Row> {
        self.rows
            .iter()
            .filter_map(|(key, &count)| {
                let flag = self.flags.get(key.flag)?;
                let reason = Reason::ALL.get(key.reason).copied()?;
                let (rule, rule_label) = match key.stage {
                    Stage::Consent => (None, "(consent)".to_string()),
                    Stage::Disabled => (None, "(kill switch)".to_string()),
                    Stage::Override => (None, "(override)".to_string()),
                    Stage::Default => (None, "(default)".to_string()),
                    Stage::Error => (None, "(no unit)".to_string()),
                    Stage::Rule(i) => match flag.rule_names.get(i).cloned().flatten() {
                        Some(name) => (Some(Value::String(name.clone())), name),
                        None => (Some(json!(i)), format!("rules[{i}]")),
                    },
                };
                let variation = key.variation.and_then(|v| flag.variations.get(v));
                Some(Row {
                    flag: flag.key.clone(),
                    rule,
                    rule_label,
                    variation: variation.map(|(name, _)| name.clone()),
                    cluster: variation.and_then(|(_, c)| c.clone()),
                    reason: reason.as_str(),
                    error: (reason == Reason::Error)
                        .then_some(crate::outcome::ErrorCode::TargetingKeyMissing.as_str()),
                    count,
                    percent: percent(count, flag.in_scope),
                })
            })
            .collect()
    }

    /// The report as JSON (what the JavaScript build's `simulate` returns).
    pub fn to_json(&self) -> Value {
        let rows = self.rows();
        let flags: Vec<Value> = self
            .flags
            .iter()
            .map(|f| {
                let rows: Vec<Value> = rows
                    .iter()
                    .filter(|r| r.flag == f.key)
                    .map(|r| {
                        json!({
                            "rule": r.rule,
                            "rule_label": r.rule_label,
                            "variation": r.variation,
                            "cluster": r.cluster,
                            "reason": r.reason,
                            "error": r.error,
                            "count": r.count,
                            "percent": r.percent,
                        })
                    })
                    .collect();
                json!({
                    "flag": f.key,
                    "in_scope": f.in_scope,
                    "percent_in_scope": percent(f.in_scope, self.requests),
                    "consent_denied": f.consent_denied,
                    "rows": rows,
                })
            })
            .collect();
        let rejects: Vec<Value> = self
            .rejects
            .iter()
            .map(|(&(flag, status), &count)| {
                json!({
                    "flag": self.flags.get(flag).map(|f| f.key.as_str()),
                    "status": status,
                    "count": count,
                    "percent": percent(count, self.requests),
                })
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|(cluster, count)| {
                json!({"cluster": cluster, "count": count, "percent": percent(*count, self.requests)})
            })
            .collect();
        json!({
            "version": self.version,
            "environment": self.environment,
            "seed": self.seed,
            "requests": self.requests,
            "flags": flags,
            "consent_denied": self.flags.iter().map(|f| f.consent_denied).sum::<u64>(),
            "rejected": self.rejected(),
            "rejects": rejects,
            "routes": routes,
            "no_route": self.no_route,
            "untouched": self.untouched,
        })
    }

    /// The report as a plain-text table (what `switchyard simulate` prints).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let origin = match self.seed {
            Some(seed) => format!("synthetic requests, seed {seed}"),
            None => "requests".to_string(),
        };
        let _ = writeln!(
            out,
            "policy {} ({}): {} {}",
            self.version,
            self.environment.as_deref().unwrap_or("no environment"),
            self.requests,
            origin
        );
        let rows = self.rows();
        let header = ["FLAG", "RULE", "VARIATION", "REASON", "COUNT", "%"];
        let mut lines: Vec<[String; 6]> = Vec::new();
        for f in &self.flags {
            lines.push([
                f.key.clone(),
                "(in scope)".to_string(),
                String::new(),
                String::new(),
                f.in_scope.to_string(),
                format!("{:.2}", percent(f.in_scope, self.requests)),
            ]);
            for r in rows.iter().filter(|r| r.flag == f.key) {
                let variation = match (&r.variation, f.reject_status) {
                    (Some(v), _) => v.clone(),
                    (None, Some(status)) => format!("reject {status}"),
                    (None, None) => "-".to_string(),
                };
                let reason = match r.error {
                    Some(e) => format!("{} {e}", r.reason),
                    None => r.reason.to_string(),
                };
                lines.push([
                    String::new(),
                    r.rule_label.clone(),
                    variation,
                    reason,
                    r.count.to_string(),
                    format!("{:.2}", r.percent),
                ]);
            }
        }
        let mut widths = header.map(str::len);
        for l in &lines {
            for (w, cell) in widths.iter_mut().zip(l.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let render = |out: &mut String, cells: [&str; 6]| {
            let mut line = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i >= 4 {
                    let _ = write!(line, "  {cell:>w$}");
                } else if i == 0 {
                    let _ = write!(line, "{cell:<w$}");
                } else {
                    let _ = write!(line, "  {cell:<w$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        };
        out.push('\n');
        render(&mut out, header);
        for l in &lines {
            render(&mut out, [&l[0], &l[1], &l[2], &l[3], &l[4], &l[5]]);
        }
        out.push('\n');
        let total = self.requests;
        let denied: u64 = self.flags.iter().map(|f| f.consent_denied).sum();
        let _ = writeln!(out, "consent denials: {denied} decision(s)");
        let _ = writeln!(
            out,
            "rejected (local reply, never upstream): {} ({:.2}%)",
            self.rejected(),
            percent(self.rejected(), total)
        );
        for (&(flag, status), &count) in &self.rejects {
            let key = self.flags.get(flag).map_or("?", |f| f.key.as_str());
            let _ = writeln!(
                out,
                "  {key} {status}: {count} ({:.2}%)",
                percent(count, total)
            );
        }
        let _ = writeln!(out, "routed:");
        for (cluster, count) in &self.routes {
            let _ = writeln!(out, "  {cluster}: {count} ({:.2}%)", percent(*count, total));
        }
        let _ = writeln!(
            out,
            "  (no route header): {} ({:.2}%)",
            self.no_route,
            percent(self.no_route, total)
        );
        let _ = writeln!(
            out,
            "untouched (no flag in scope): {} ({:.2}%)",
            self.untouched,
            percent(self.untouched, total)
        );
        out
    }
}

/// Loads the policy, makes `units` synthetic requests with `seed` and counts their outcomes.
pub fn simulate(policy_json: &str, units: usize, seed: u64) -> Result<Report, PolicyErrors> {
    let policy = crate::load(policy_json)?;
    let requests = synthetic_requests(policy_json, units, seed)?;
    let mut report = Report::run(&policy, &requests);
    report.seed = Some(seed);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/support-copilot/policy.json");

    #[test]
    fn the_generator_is_deterministic_and_seed_dependent() {
        let a = synthetic_requests(EXAMPLE, 200, 7).unwrap();
        let b = synthetic_requests(EXAMPLE, 200, 7).unwrap();
        let c = synthetic_requests(EXAMPLE, 200, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 200);
    }

    #[test]
    fn requests_are_aimed_at_each_flags_scope_in_turn() {
        let reqs = synthetic_requests(EXAMPLE, 10, 1).unwrap();
        for (i, r) in reqs.iter().enumerate() {
            let prefix = if i % 2 == 0 {
                "/v1/chat/completions"
            } else {
                "/v1/agent"
            };
            assert!(r.path.starts_with(prefix), "{i}: {}", r.path);
        }
    }

    #[test]
    fn values_come_from_the_policy_plus_unknowns() {
        let reqs = synthetic_requests(EXAMPLE, 2000, 1).unwrap();
        let tenants: Vec<&str> = reqs
            .iter()
            .filter_map(|r| r.header("x-tenant-id"))
            .collect();
        for t in ["acme", "globex", "initech", "bank-one", "our-company"] {
            assert!(tenants.contains(&t), "tenant {t} never drawn");
        }
        assert!(tenants.contains(&"sim-unknown-1"));
        assert!(tenants.len() < reqs.len(), "some requests have no tenant");
        let plans: Vec<&str> = reqs.iter().filter_map(|r| r.header("x-plan")).collect();
        assert!(plans.contains(&"pro") && plans.contains(&"enterprise"));
        // Units are fresh ids, so each conversation is (almost always) new.
        let convs: std::collections::HashSet<&str> = reqs
            .iter()
            .filter_map(|r| r.header("x-conversation-id"))
            .collect();
        assert_eq!(convs.len(), reqs.len());
    }

    #[test]
    fn operators_get_values_that_satisfy_them() {
        assert_eq!(samples(Op::Gt, &["10".into()]), ["9", "10", "11"]);
        assert_eq!(samples(Op::Lt, &["2.5".into()]), ["1.5", "2.5", "3.5"]);
        assert_eq!(
            samples(Op::SemverGte, &["1.2.0".into()]),
            ["1.2.0", "1.2.1", "1.1.0"]
        );
        assert_eq!(samples(Op::Cidr, &["10.1.0.0/16".into()]), ["10.1.0.0"]);
        assert_eq!(samples(Op::StartsWith, &["ab".into()]), ["absim"]);
        assert_eq!(
            samples(Op::Matches, &["^gpt-(4|5)$".into()]),
            ["gpt-4", "gpt-5"]
        );
        // A bound at the top of the patch range has nothing above it (found by fuzzing: the
        // `+ 1` overflowed and `simulate` panicked).
        assert_eq!(
            samples(Op::SemverLt, &["v1.2.0".into()]),
            ["1.2.0", "1.2.1", "1.1.0"]
        );
        assert_eq!(
            samples(Op::SemverGt, &["0.0.18446744073709551615".into()]),
            ["0.0.18446744073709551615", "0.0.18446744073709551614"]
        );
    }

    #[test]
    fn cookie_and_query_attributes_are_encoded_so_they_read_back() {
        let policy = r#"{"version": "1",
          "context": {"c": {"cookie": "cv"}, "q": {"query": "qv"}},
          "flags": [{"key": "f", "variations": {"a": {"cluster": "a"}, "b": {"cluster": "b"}},
            "off_variation": "a",
            "rules": [{"when": [{"attribute": "c", "op": "in", "values": ["x y;z"]},
                                {"attribute": "q", "op": "in", "values": ["a&b=c+d"]}], "serve": "b"}],
            "default": {"serve": "a"}}]}"#;
        let compiled = crate::load(policy).unwrap();
        let reqs = synthetic_requests(policy, 400, 3).unwrap();
        let report = Report::run(&compiled, &reqs);
        let rows = report.rows();
        let hit = rows
            .iter()
            .find(|r| r.variation.as_deref() == Some("b"))
            .expect("the rule matched some synthetic requests");
        assert!(hit.count > 0);
        assert_eq!(hit.rule, Some(json!(0)));
        assert_eq!(hit.rule_label, "rules[0]");
    }

    #[test]
    fn the_report_counts_every_decision_and_adds_up() {
        let report = simulate(EXAMPLE, 4000, 1).unwrap();
        assert_eq!(report.requests(), 4000);
        let rows = report.rows();
        for (flag, in_scope) in report.in_scope() {
            assert_eq!(in_scope, 2000, "{flag}");
            let sum: u64 = rows
                .iter()
                .filter(|r| r.flag == flag)
                .map(|r| r.count)
                .sum();
            assert_eq!(sum, in_scope, "{flag}");
            let pct: f64 = rows
                .iter()
                .filter(|r| r.flag == flag)
                .map(|r| r.percent)
                .sum();
            assert!((pct - 100.0).abs() < 1e-9, "{flag}: {pct}");
        }
        let find = |flag: &str, label: &str, variation: Option<&str>, reason: &str| {
            rows.iter()
                .find(|r| {
                    r.flag == flag
                        && r.rule_label == label
                        && r.variation.as_deref() == variation
                        && r.reason == reason
                })
                .map_or(0, |r| r.count)
        };
        let f = "support_answer_model_route";
        assert!(find(f, "(override)", Some("candidate"), "TARGETING_MATCH") > 0);
        assert!(
            find(
                f,
                "regulated stays on control",
                Some("control"),
                "TARGETING_MATCH"
            ) > 0
        );
        assert!(find(f, "(consent)", Some("fallback"), "CONSENT_DENIED") > 0);
        let canary = find(f, "paid canary", Some("candidate"), "SPLIT");
        let rest = find(f, "paid canary", Some("control"), "SPLIT");
        assert!(
            canary > 0 && rest > 10 * canary,
            "5/95 split: {canary} vs {rest}"
        );
        // agent_tools is opt-in: only initech consented, so most are rejected with 403.
        let a = "agent_tools";
        let rejected = find(a, "(consent)", None, "CONSENT_DENIED");
        assert_eq!(rejected, report.rejected());
        assert!(rejected > 1000);
        assert!(find(a, "(default)", Some("on"), "SPLIT") > 0);
        assert_eq!(report.untouched(), 0);
        let json = report.to_json();
        assert_eq!(json["requests"], 4000);
        assert_eq!(json["rejected"], rejected);
        assert_eq!(json["flags"][1]["flag"], a);
        let table = report.table();
        assert!(table.contains("paid canary"), "{table}");
        assert!(table.contains("reject 403"), "{table}");
        assert_eq!(table, simulate(EXAMPLE, 4000, 1).unwrap().table());
    }

    #[test]
    fn a_missing_unit_and_untouched_requests_are_counted() {
        let policy = crate::load(EXAMPLE).unwrap();
        let lines = [
            r#"{"path": "/healthz"}"#,
            r#"{"path": "/v1/agent/run", "headers": {"x-tenant-id": "initech"}}"#,
            r#"{"path": "/v1/agent/run", "headers": {"x-tenant-id": "initech", "x-user-id": "u1"}}"#,
        ];
        let reqs: Vec<Request> = lines
            .iter()
            .map(|l| Request::from_json(l).unwrap())
            .collect();
        let report = Report::run(&policy, &reqs);
        assert_eq!(report.untouched(), 1);
        let rows = report.rows();
        let err = rows.iter().find(|r| r.reason == "ERROR").unwrap();
        assert_eq!(err.error, Some("TARGETING_KEY_MISSING"));
        assert_eq!(err.rule_label, "(no unit)");
        assert_eq!(err.count, 1);
        assert!((err.percent - 50.0).abs() < 1e-9);
        assert!(report.table().contains("ERROR TARGETING_KEY_MISSING"));
    }

    /// A rule reached only through `matches` shows in the table: the synthetic requests carry
    /// values that the regular expression matches (before 2026-11-23 it never showed).
    #[test]
    fn a_rule_behind_a_regular_expression_is_reached() {
        let policy = r#"{"version": "1",
          "context": {"agent": {"header": "user-agent"}, "user": {"header": "x-user-id"}},
          "flags": [{"key": "f", "unit": "user",
            "variations": {"a": {"cluster": "ca"}, "b": {"cluster": "cb"}}, "off_variation": "a",
            "rules": [{"name": "mobile", "when": [{"attribute": "agent", "op": "matches",
                        "values": ["^(Android|iPhone) app/[0-9]+\\.[0-9]+$"]}], "serve": "b"}],
            "default": {"serve": "a"}}]}"#;
        let report = simulate(policy, 1000, 1).unwrap();
        let mobile: u64 = report
            .rows()
            .iter()
            .filter(|r| r.rule_label == "mobile")
            .map(|r| r.count)
            .sum();
        assert!(mobile > 50, "{}", report.table());
    }

    #[test]
    fn an_invalid_policy_is_refused() {
        assert!(simulate("{}", 10, 1).is_err());
        assert!(synthetic_requests("not json", 10, 1).is_err());
    }

    #[test]
    fn a_policy_without_flags_leaves_everything_untouched() {
        let report = simulate(r#"{"version": "1", "flags": []}"#, 50, 1).unwrap();
        assert_eq!(report.untouched(), 50);
        assert!(report.rows().is_empty());
    }
}
