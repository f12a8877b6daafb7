//! Compiled clauses: each operator's values are turned, once at policy load, into the form that
//! is cheapest to test (hash sets, compiled regexes, parsed numbers, versions and networks).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;
use regex_lite::Regex;
use semver::Version;

use crate::error::quoted;
use crate::model::Op;
use crate::pattern::Pattern;

/// A hasher for policy-side sets: one xxh3 call per key. The keys are the policy's own (request
/// values are only looked up, never inserted), so there is no hash-flooding exposure.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FastBuild = BuildHasherDefault<KeyHasher>;
pub type FastSet = HashSet<Box<str>, FastBuild>;
pub type FastMap<V> = std::collections::HashMap<Box<str>, V, FastBuild>;

/// Exact-match values: a short list is scanned, a long one hashed.
#[derive(Debug, Clone)]
pub enum ValueSet {
    Few(Vec<Box<str>>),
    Many(FastSet),
}

impl ValueSet {
    const SCAN_UP_TO: usize = 8;

    pub fn new(values: &[String]) -> ValueSet {
        if values.len() <= Self::SCAN_UP_TO {
            ValueSet::Few(values.iter().map(|v| v.as_str().into()).collect())
        } else {
            ValueSet::Many(values.iter().map(|v| v.as_str().into()).collect())
        }
    }

    pub fn contains(&self, value: &str) -> bool {
        match self {
            ValueSet::Few(list) => list.iter().any(|v| &**v == value),
            ValueSet::Many(set) => set.contains(value),
        }
    }
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher")
    }
}

/// An operator with its values, ready to test.
#[derive(Debug, Clone)]
pub enum Test {
    In(ValueSet),
    NotIn(ValueSet),
    StartsWith(Vec<String>),
    EndsWith(Vec<String>),
    Contains(Vec<String>),
    Matches(Vec<Pattern>),
    Exists,
    Number(Op, f64),
    Semver(Op, Version),
    Cidr(Vec<IpNet>),
}

/// A clause ready to evaluate: the attribute's index in the request context, the test, and
/// whether to negate it.
#[derive(Debug, Clone)]
pub struct CompiledClause {
    pub attribute: usize,
    pub test: Test,
    pub negate: bool,
}

impl CompiledClause {
    /// A missing attribute fails every operator except a negated one: `exists` is false, and
    /// `negate` turns any result around (so `{"op": "exists", "negate": true}` means absent).
    pub fn holds(&self, value: Option<&str>) -> bool {
        let result = match value {
            None => false,
            Some(v) => self.test.holds(v),
        };
        result != self.negate
    }
}

impl Test {
    /// Builds the test for `op` and `values`, or says what is wrong with each bad value (its
    /// index and the problem).
    pub fn compile(
        op: Op,
        values: &[String],
        regexes: &mut Regexes,
    ) -> Result<Test, Vec<(usize, String)>> {
        Ok(match op {
            Op::In => Test::In(ValueSet::new(values)),
            Op::NotIn => Test::NotIn(ValueSet::new(values)),
            Op::StartsWith => Test::StartsWith(values.to_vec()),
            Op::EndsWith => Test::EndsWith(values.to_vec()),
            Op::Contains => Test::Contains(values.to_vec()),
            Op::Exists => Test::Exists,
            Op::Matches => Test::Matches(regexes.clause(values)?),
            Op::Lt | Op::Lte | Op::Gt | Op::Gte => {
                let v = first(values)?;
                let n = parse_number(v)
                    .ok_or_else(|| vec![(0, format!("{} is not a number", quoted(v)))])?;
                Test::Number(op, n)
            }
            Op::SemverLt | Op::SemverLte | Op::SemverGt | Op::SemverGte | Op::SemverEq => {
                let v = first(values)?;
                let version = parse_semver(v).ok_or_else(|| {
                    vec![(
                        0,
                        format!(
                            "{} is not a semantic version (like 1.4.0 or 2.0.0-rc.1)",
                            quoted(v)
                        ),
                    )]
                })?;
                Test::Semver(op, version)
            }
            Op::Cidr => Test::Cidr(each(values, |v| {
                parse_cidr(v).ok_or_else(|| {
                    format!("{} is not a CIDR block (like 10.0.0.0/8 or 2001:db8::/32) or an IP address", quoted(v))
                })
            })?),
        })
    }

    fn holds(&self, v: &str) -> bool {
        match self {
            Test::In(set) => set.contains(v),
            Test::NotIn(set) => !set.contains(v),
            Test::StartsWith(list) => list.iter().any(|p| v.starts_with(p.as_str())),
            Test::EndsWith(list) => list.iter().any(|p| v.ends_with(p.as_str())),
            Test::Contains(list) => list.iter().any(|p| v.contains(p.as_str())),
            Test::Matches(list) => list.iter().any(|p| p.is_match(v)),
            Test::Exists => true,
            Test::Number(op, bound) => match parse_number(v) {
                None => false,
                Some(n) => match op {
                    Op::Lt => n < *bound,
                    Op::Lte => n <= *bound,
                    Op::Gt => n > *bound,
                    _ => n >= *bound,
                },
            },
            Test::Semver(op, bound) => match parse_semver(v) {
                None => false,
                Some(version) => {
                    let ord = version.cmp_precedence(bound);
                    match op {
                        Op::SemverLt => ord.is_lt(),
                        Op::SemverLte => ord.is_le(),
                        Op::SemverGt => ord.is_gt(),
                        Op::SemverGte => ord.is_ge(),
                        _ => ord.is_eq(),
                    }
                }
            },
            Test::Cidr(nets) => match parse_ip(v) {
                None => false,
                Some(ip) => nets.iter().any(|n| n.contains(&ip)),
            },
        }
    }
}

/// Values of a clause on the built-in `host` that no request's host can ever be: the host is
/// read in lower case and without its port, so `"API.example"` or `"api.example:443"` would
/// make a clause that silently never holds (or, negated or under `not_in`, always holds).
/// Each comes back with its index and what to write instead.
pub fn host_values_never_read(op: Op, values: &[String]) -> Vec<(usize, String)> {
    let whole_host = matches!(op, Op::In | Op::NotIn | Op::EndsWith);
    let compared_as_text = whole_host || matches!(op, Op::StartsWith | Op::Contains);
    if !compared_as_text {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let lower = value.to_ascii_lowercase();
        let bare = if whole_host {
            crate::request::host_without_port(&lower)
        } else {
            &lower
        };
        if bare != value {
            out.push((
                i,
                format!(
                    "the host attribute is read in lower case and without its port, so {} \
                     never matches it; write {}",
                    quoted(value),
                    quoted(bare)
                ),
            ));
        }
    }
    out
}

/// The one value of a comparing operator. None is there only when reading the document already
/// refused the clause's values (none written, or the one written refused), so there is nothing
/// more to say here: no message, and the clause is left out.
fn first(values: &[String]) -> Result<&str, Vec<(usize, String)>> {
    values.first().map(String::as_str).ok_or_else(Vec::new)
}

/// Converts every value, or reports every one that does not convert, with its index.
fn each<T>(
    values: &[String],
    mut convert: impl FnMut(&str) -> Result<T, String>,
) -> Result<Vec<T>, Vec<(usize, String)>> {
    let mut out = Vec::with_capacity(values.len());
    let mut bad = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match convert(v) {
            Ok(x) => out.push(x),
            Err(e) => bad.push((i, e)),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(bad)
    }
}

/// A policy's regular expressions: each distinct pattern compiled once, and all of them within
/// a budget. The size limit holds for one pattern; without a count, a 150 KB document of
/// thousands of small patterns that each compile to half a megabyte (`(?:a{100}){320}`)
/// would exhaust the filter's memory.
#[derive(Default)]
pub struct Regexes {
    /// Each distinct pattern, compiled or refused. At most [`crate::limits::MAX_REGEXES`], so
    /// a linear search is cheap, and it keeps another map type out of the module.
    compiled: Vec<(String, Result<Regex, String>)>,
    /// Budget units handed to clauses, refused patterns included: each clone of a regex gets
    /// its own matching cache when used, sized by its program and its capture groups.
    used: usize,
}

impl Regexes {
    /// One clause's regexes, or every bad value with its index (a repeated one once).
    fn clause(&mut self, values: &[String]) -> Result<Vec<Pattern>, Vec<(usize, String)>> {
        let mut taken: Vec<usize> = Vec::new();
        let found = each(values, |v| self.pattern(v, &mut taken))?;
        Ok(found.into_iter().flatten().collect())
    }

    /// `pattern` for a clause that holds the patterns at `taken` already: its regex, or None
    /// when the clause has it already (a repeat can only match alike).
    fn pattern(
        &mut self,
        pattern: &str,
        taken: &mut Vec<usize>,
    ) -> Result<Option<Pattern>, String> {
        use crate::limits::MAX_REGEXES;
        let at = match self.compiled.iter().position(|(p, _)| p == pattern) {
            Some(at) if taken.contains(&at) => return Ok(None),
            Some(at) => at,
            None if self.used >= MAX_REGEXES => return Err(over_budget()),
            None => {
                self.compiled.push((pattern.to_string(), regex(pattern)));
                self.compiled.len() - 1
            }
        };
        taken.push(at);
        let Some((_, compiled)) = self.compiled.get(at) else {
            return Ok(None);
        };
        // A refused pattern costs one unit; a regex one per capture slot pair.
        let units = compiled.as_ref().map_or(1, |re| re.captures_len().max(1));
        if self.used + units > MAX_REGEXES {
            return Err(over_budget());
        }
        self.used += units;
        compiled.clone().map(|re| Some(Pattern::new(pattern, re)))
    }
}

fn over_budget() -> String {
    use crate::limits::MAX_REGEXES;
    format!(
        "the policy's regular expressions are over their budget of {MAX_REGEXES} (each counts \
         1, and 1 more per capture group: write groups as (?:...) where nothing reads them)"
    )
}

/// A regular expression within the length and compiled-size limits.
fn regex(v: &str) -> Result<regex_lite::Regex, String> {
    if v.len() > crate::limits::MAX_REGEX_LEN {
        return Err(format!(
            "the regular expression is {} bytes long; the limit is {}",
            v.len(),
            crate::limits::MAX_REGEX_LEN
        ));
    }
    regex_lite::RegexBuilder::new(v)
        .size_limit(crate::limits::MAX_REGEX_SIZE)
        .nest_limit(64)
        .build()
        .map_err(|e| format!("bad regular expression: {e}"))
}

/// A finite decimal number; `NaN` and infinities are not numbers here.
fn parse_number(s: &str) -> Option<f64> {
    let n: f64 = s.trim().parse().ok()?;
    n.is_finite().then_some(n)
}

/// A semantic version; a leading `v` (as in `v1.2.3`) is accepted.
pub(crate) fn parse_semver(s: &str) -> Option<Version> {
    let s = s.trim();
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    Version::parse(s).ok()
}

/// A CIDR block, or a bare address meaning just that address.
fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// A client address, with or without a port (`10.0.0.1`, `10.0.0.1:443`, `[::1]:443`).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    crate::request::ip_without_port(s.trim()).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clause(op: Op, values: &[&str], negate: bool) -> CompiledClause {
        let values: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        CompiledClause {
            attribute: 0,
            test: compile(op, &values).unwrap(),
            negate,
        }
    }

    fn compile(op: Op, values: &[String]) -> Result<Test, Vec<(usize, String)>> {
        Test::compile(op, values, &mut Regexes::default())
    }

    fn holds(op: Op, values: &[&str], v: Option<&str>) -> bool {
        clause(op, values, false).holds(v)
    }

    #[test]
    fn in_and_not_in() {
        assert!(holds(Op::In, &["pro", "enterprise"], Some("pro")));
        assert!(!holds(Op::In, &["pro", "enterprise"], Some("Pro")));
        assert!(!holds(Op::In, &["pro"], None));
        assert!(holds(Op::NotIn, &["free"], Some("pro")));
        assert!(!holds(Op::NotIn, &["free"], Some("free")));
        assert!(!holds(Op::NotIn, &["free"], None), "missing fails not_in");
        let many: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(holds(Op::In, &many, Some("t99")));
        assert!(!holds(Op::In, &many, Some("t100")));
        assert!(holds(Op::NotIn, &many, Some("t100")));
    }

    #[test]
    fn string_operators() {
        assert!(holds(Op::StartsWith, &["gpt-", "o1"], Some("o1-mini")));
        assert!(!holds(Op::StartsWith, &["gpt-"], Some("claude")));
        assert!(holds(Op::EndsWith, &[".example"], Some("api.example")));
        assert!(!holds(Op::EndsWith, &[".example"], Some("example.com")));
        assert!(holds(Op::Contains, &["beta"], Some("app-beta-2")));
        assert!(!holds(Op::Contains, &["beta"], Some("alpha")));
        assert!(holds(
            Op::Matches,
            &["^eu-(west|north)-[0-9]$"],
            Some("eu-west-1")
        ));
        assert!(!holds(
            Op::Matches,
            &["^eu-(west|north)-[0-9]$"],
            Some("us-east-1")
        ));
        assert!(holds(Op::Matches, &["x", "^a"], Some("abc")));
    }

    #[test]
    fn exists_and_negate() {
        assert!(holds(Op::Exists, &[], Some("")));
        assert!(!holds(Op::Exists, &[], None));
        assert!(clause(Op::Exists, &[], true).holds(None));
        assert!(!clause(Op::Exists, &[], true).holds(Some("x")));
        assert!(clause(Op::In, &["a"], true).holds(Some("b")));
        assert!(clause(Op::In, &["a"], true).holds(None));
    }

    #[test]
    fn numbers() {
        assert!(holds(Op::Lt, &["10"], Some("9.5")));
        assert!(!holds(Op::Lt, &["10"], Some("10")));
        assert!(holds(Op::Lte, &["10"], Some("10")));
        assert!(holds(Op::Gt, &["-1"], Some("0")));
        assert!(!holds(Op::Gt, &["5"], Some("5")));
        assert!(holds(Op::Gte, &["5"], Some(" 5 ")));
        assert!(!holds(Op::Gte, &["5"], Some("five")));
        assert!(!holds(Op::Lt, &["5"], Some("NaN")));
        assert!(compile(Op::Lt, &["ten".into()]).is_err());
    }

    #[test]
    fn semver() {
        assert!(holds(Op::SemverLt, &["2.0.0"], Some("1.9.9")));
        assert!(holds(Op::SemverLt, &["2.0.0"], Some("2.0.0-rc.1")));
        assert!(!holds(Op::SemverLt, &["2.0.0"], Some("2.0.0")));
        assert!(holds(Op::SemverLte, &["2.0.0"], Some("v2.0.0")));
        assert!(holds(Op::SemverGt, &["1.2.3"], Some("1.10.0")));
        assert!(holds(Op::SemverGte, &["1.2.3"], Some("1.2.3")));
        assert!(holds(Op::SemverEq, &["1.2.3"], Some("1.2.3+build.7")));
        assert!(!holds(Op::SemverEq, &["1.2.3"], Some("1.2.4")));
        assert!(!holds(Op::SemverGt, &["1.2.3"], Some("not-a-version")));
        assert!(compile(Op::SemverEq, &["1.2".into()]).is_err());
    }

    #[test]
    fn cidr() {
        assert!(holds(Op::Cidr, &["10.0.0.0/8"], Some("10.1.2.3")));
        assert!(holds(Op::Cidr, &["10.0.0.0/8"], Some("10.1.2.3:5555")));
        assert!(!holds(Op::Cidr, &["10.0.0.0/8"], Some("11.1.2.3")));
        assert!(holds(
            Op::Cidr,
            &["2001:db8::/32"],
            Some("[2001:db8::1]:443")
        ));
        assert!(holds(Op::Cidr, &["192.168.1.7"], Some("192.168.1.7")));
        assert!(
            holds(Op::Cidr, &["10.1.2.3/8"], Some("10.200.0.1")),
            "host bits are ignored"
        );
        assert!(!holds(Op::Cidr, &["10.0.0.0/8"], Some("garbage")));
        assert!(compile(Op::Cidr, &["10.0.0.0/33".into()]).is_err());
        assert!(compile(Op::Cidr, &["ten".into()]).is_err());
    }

    #[test]
    fn bad_regex_is_refused() {
        let err = compile(
            Op::Matches,
            &["ok".into(), "(unclosed".into(), "fine".into(), "[".into()],
        )
        .unwrap_err();
        assert_eq!(err.len(), 2, "every bad value: {err:?}");
        assert_eq!((err[0].0, err[1].0), (1, 3));
        assert!(err
            .iter()
            .all(|(_, e)| e.contains("bad regular expression")));
        let err = compile(
            Op::Cidr,
            &["ten".into(), "10.0.0.0/8".into(), "10.0.0.0/33".into()],
        )
        .unwrap_err();
        assert_eq!(err.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 2]);
    }
}
