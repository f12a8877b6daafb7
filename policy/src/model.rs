//! The policy document as read from JSON, structurally checked but with names not yet resolved.
//! `document` builds it; `compile` resolves names and turns it into a [`crate::CompiledPolicy`].

/// Where a context attribute comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Header(String),
    Cookie(String),
    Query(String),
}

/// Attributes every request has, under these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// The path without its query string.
    Path,
    /// The host without a port.
    Host,
    Method,
    SourceIp,
}

impl Builtin {
    pub const ALL: [(&'static str, Builtin); 4] = [
        ("path", Builtin::Path),
        ("host", Builtin::Host),
        ("method", Builtin::Method),
        ("source_ip", Builtin::SourceIp),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentMode {
    OptIn,
    OptOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentState {
    OptIn,
    OptOut,
    Unset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub class: String,
    pub state: ConsentState,
}

#[derive(Debug, Clone)]
pub struct Consent {
    pub tenant_attribute: String,
    pub classes: Vec<(String, ConsentMode)>,
    /// Tenant id and its records, in document order.
    pub tenants: Vec<(String, TenantConsent)>,
}

/// A tenant's consent records as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantConsent {
    /// Every record well formed and its class defined: the state per class, indexed like
    /// [`Consent::classes`], as the compiled policy keeps it. A consent table is nearly all
    /// such tenants, and this is moved into the compiled table as it is.
    States(Box<[ConsentState]>),
    /// The records as written, for the compiler to resolve their classes and report those
    /// not defined.
    Records(Vec<ConsentRecord>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    In,
    NotIn,
    StartsWith,
    EndsWith,
    Contains,
    Matches,
    Exists,
    Lt,
    Lte,
    Gt,
    Gte,
    SemverLt,
    SemverLte,
    SemverGt,
    SemverGte,
    SemverEq,
    Cidr,
}

impl Op {
    pub const ALL: [(&'static str, Op); 17] = [
        ("in", Op::In),
        ("not_in", Op::NotIn),
        ("starts_with", Op::StartsWith),
        ("ends_with", Op::EndsWith),
        ("contains", Op::Contains),
        ("matches", Op::Matches),
        ("exists", Op::Exists),
        ("lt", Op::Lt),
        ("lte", Op::Lte),
        ("gt", Op::Gt),
        ("gte", Op::Gte),
        ("semver_lt", Op::SemverLt),
        ("semver_lte", Op::SemverLte),
        ("semver_gt", Op::SemverGt),
        ("semver_gte", Op::SemverGte),
        ("semver_eq", Op::SemverEq),
        ("cidr", Op::Cidr),
    ];

    pub fn parse(name: &str) -> Option<Op> {
        Op::ALL.iter().find(|(n, _)| *n == name).map(|(_, op)| *op)
    }
}

#[derive(Debug, Clone)]
pub struct Clause {
    /// Where the clause stands in the document, for errors found after parsing.
    pub place: String,
    pub attribute: String,
    pub op: Op,
    pub values: Vec<String>,
    pub negate: bool,
}

#[derive(Debug, Clone)]
pub enum Condition {
    /// (segment name, place of the condition)
    Segment(String, String),
    Clause(Clause),
}

#[derive(Debug, Clone)]
pub struct SplitEntry {
    pub variation: String,
    pub weight: u64,
    /// Its index in the split as written (entries whose variation is unreadable are left out).
    pub index: usize,
}

/// What a rule or the default serves.
#[derive(Debug, Clone)]
pub enum Serve {
    Variation(String),
    Split(Vec<SplitEntry>),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub place: String,
    pub name: Option<String>,
    pub when: Vec<Condition>,
    /// None when what it serves is broken (already reported): the rule is kept so the
    /// references in its `when` are still checked.
    pub serve: Option<Serve>,
}

#[derive(Debug, Clone)]
pub struct Override {
    pub place: String,
    pub attribute: String,
    pub values: Vec<String>,
    pub serve: String,
}

#[derive(Debug, Clone)]
pub enum DeniedAction {
    Serve(String),
    Reject { status: u16 },
}

#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub path_prefix: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub header_present: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Variation {
    pub name: String,
    pub cluster: Option<String>,
    pub attributes: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Flag {
    pub place: String,
    pub key: String,
    pub enabled: bool,
    pub scope: Scope,
    pub feature_class: Option<String>,
    pub unit: Option<String>,
    pub salt: Option<String>,
    pub variations: Vec<Variation>,
    pub off_variation: String,
    pub on_consent_denied: Option<DeniedAction>,
    pub overrides: Vec<Override>,
    pub rules: Vec<Rule>,
    pub default: Option<Serve>,
}

/// How the filter presents its work to Envoy and upstreams (switchyard's addition to the
/// contract; every field has a default).
#[derive(Debug, Clone)]
pub struct SettingsDoc {
    pub route_header: String,
    pub exposure_header: String,
    /// `None` with `"version_header": false`: the version still travels in every exposure item.
    pub version_header: Option<String>,
    /// Attribute name → header name, for the route-deciding variation's plain attribute headers.
    pub attribute_headers: Vec<(String, String)>,
    /// `false` with `"attribute_headers": false`: attributes travel only in the exposure items.
    pub plain_attribute_headers: bool,
    pub response_headers: bool,
    pub expose_unit_ids: bool,
    /// Write the outcome as filter state `wasm.switchyard_exposure` (default on).
    pub exposure_state: bool,
    /// Write the exposure event as filter state `wasm.switchyard_event` (default on).
    pub exposure_event: bool,
    /// 128-bit key (32 hex digits) for pseudonymous unit ids in exposure events.
    pub pseudonym_key: Option<[u8; 16]>,
    /// Upstream response header that says a model gateway fell back (`fallback_used`).
    pub fallback_header: Option<String>,
    /// Count responses by status class and latency per exposed variation (default on).
    pub upstream_metrics: bool,
}

impl SettingsDoc {
    /// The headers switchyard sets under fixed settings, by setting key (`route_header`, ...);
    /// the version header only when it is not turned off.
    pub fn fixed_headers(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("route_header", Some(&self.route_header)),
            ("exposure_header", Some(&self.exposure_header)),
            ("version_header", self.version_header.as_ref()),
        ]
        .into_iter()
        .filter_map(|(key, h)| Some((key, h?)))
    }
}

impl Default for SettingsDoc {
    fn default() -> Self {
        SettingsDoc {
            route_header: "x-switchyard-cluster".into(),
            exposure_header: "x-switchyard-exposure".into(),
            version_header: Some("x-switchyard-policy-version".into()),
            attribute_headers: Vec::new(),
            plain_attribute_headers: true,
            response_headers: false,
            expose_unit_ids: false,
            exposure_state: true,
            exposure_event: true,
            pseudonym_key: None,
            fallback_header: None,
            upstream_metrics: true,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PolicyDoc {
    pub version: String,
    pub environment: Option<String>,
    /// Attribute name → source, in document order (built-ins are added by `compile`).
    pub context: Vec<(String, Source)>,
    pub consent: Option<Consent>,
    pub segments: Vec<(String, Vec<Clause>)>,
    pub flags: Vec<Flag>,
    pub settings: SettingsDoc,
    /// Where the filter fetches newer versions of this policy (`source`).
    pub source: Option<RemoteSource>,
    /// Where the filter fetches the consent records (`consent_source`).
    pub consent_source: Option<RemoteSource>,
}

/// An HTTP location the Envoy filter polls for a document (`source`, `consent_source`): a
/// `GET` of `path` with `:authority` `authority` on the Envoy cluster `cluster`, every
/// `interval_ms`, each attempt given up after `timeout_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSource {
    pub cluster: String,
    pub path: String,
    /// Defaults to the cluster name.
    pub authority: String,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    /// What a proxy serves until this source delivers its first document: the safe answer
    /// (`"off"` for `source`, `"deny"` for `consent_source`; the default) or the bootstrap.
    pub until_fetched: UntilFetched,
}

/// `until_fetched` of a remote source ([`crate::Awaiting`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UntilFetched {
    /// `source`: every flag serves its `off_variation`; `consent_source`: consent-gated flags
    /// deny every tenant.
    #[default]
    Safe,
    /// The bootstrap policy serves as written, its own consent records included.
    Bootstrap,
}

impl RemoteSource {
    /// `interval_ms` when the document does not say.
    pub const DEFAULT_INTERVAL_MS: u32 = 1_000;
    /// `timeout_ms` when the document does not say (at most the interval).
    pub const DEFAULT_TIMEOUT_MS: u32 = 500;
    pub const MIN_INTERVAL_MS: u32 = 100;
    pub const MAX_INTERVAL_MS: u32 = 86_400_000;
    pub const MAX_TIMEOUT_MS: u32 = 60_000;
}
