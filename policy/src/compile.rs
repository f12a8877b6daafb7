//! Resolves every name in a [`PolicyDoc`] and compiles it into a [`CompiledPolicy`]: attribute
//! indices instead of names, hash sets, regexes, cumulative split ranges, one consent table
//! keyed by tenant, and the exposure text that does not change per request. A reference that
//! does not resolve is an error with its place; nothing is compiled if there is any.

use std::collections::{HashMap, HashSet};

use crate::document::{field, index, is_printable_ascii};
use crate::error::{quoted, PolicyErrors};
use crate::matching::{CompiledClause, FastBuild, FastMap, Test, ValueSet};
use crate::model::*;
use crate::names::NameSet;
use crate::outcome::RuleRef;
use crate::owned::OwnedNames;
use crate::render;

/// Where each of the policy's own names (consent classes, segments, variations, attributes)
/// sits, looked up while compiling: one per consent record of the table, so xxh3 rather than
/// SipHash (the names are the policy's own, as for [`FastMap`]).
type NameIndex = HashMap<String, usize, FastBuild>;

/// Header-name prefix that switchyard owns outright: a client copy of any header starting with
/// it is removed before anything reads the request.
pub const OWNED_PREFIX: &str = "x-switchyard-";

/// How the filter presents its work; see the README's header reference.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The header the Envoy route reads with `cluster_header`.
    pub route_header: String,
    /// The RFC 8941 list with one item per decision.
    pub exposure_header: String,
    /// The policy version (`None`: not sent; every exposure item carries it anyway).
    pub version_header: Option<String>,
    /// Also return the exposure headers on the response (for debugging).
    pub response_headers: bool,
    /// Put the raw assignment-unit id into exposure (off by default).
    pub expose_unit_ids: bool,
    /// Write the outcome as filter state `wasm.switchyard_exposure` (on by default).
    pub exposure_state: bool,
    /// Write the exposure event as filter state `wasm.switchyard_event` (on by default).
    pub exposure_event: bool,
    /// Upstream response header whose truthy value means the model gateway fell back.
    pub fallback_header: Option<String>,
    /// Count responses by status class and latency per exposed variation (on by default).
    pub upstream_metrics: bool,
    /// Key for pseudonymous unit ids; without one, events carry no unit id at all.
    pub(crate) pseudonym_key: Option<[u8; 16]>,
}

/// A flag's names, for metrics and summaries.
#[derive(Debug, Clone)]
pub struct FlagInfo {
    pub key: String,
    pub variations: Vec<String>,
    pub feature_class: Option<String>,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum AttrSource {
    Header(String),
    Cookie(String),
    Query(String),
    Builtin(Builtin),
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledConsent {
    pub tenant_attribute: usize,
    pub modes: Vec<ConsentMode>,
    pub class_names: Vec<String>,
    /// Tenant → state per class (indexed like `modes`).
    pub tenants: FastMap<Box<[ConsentState]>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CompiledScope {
    pub path_prefix: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub header_present: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledVariation {
    pub name: String,
    pub cluster: Option<String>,
    pub attributes: Vec<(String, String)>,
    /// The start of this variation's exposure item: `"flag";variation="name"`.
    pub exposure_item: String,
    /// The variation's attributes as exposure parameters: `;attr.model_route="x"`.
    pub exposure_attributes: String,
    /// Plain attribute headers (name, value) stamped when this variation decides the route.
    pub attribute_headers: Vec<(String, String)>,
    /// The fixed parts of this variation's JSON decision objects.
    pub json: crate::json_out::VariationJson,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledSplit {
    pub total: u64,
    /// (variation, running weight sum) in listed order.
    pub ends: Vec<(usize, u64)>,
}

impl CompiledSplit {
    pub fn pick(&self, point: u64) -> usize {
        self.ends
            .iter()
            .find(|(_, end)| *end > point)
            .or(self.ends.last())
            .map(|(v, _)| *v)
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum CompiledServe {
    Variation(usize),
    Split(CompiledSplit),
}

/// A rule condition. Clauses are interned: identical clauses anywhere in the policy (the same
/// audience test repeated across flags is common) share one id, and a request tests each id at
/// most once.
#[derive(Debug, Clone)]
pub(crate) enum CompiledCondition {
    Segment(usize),
    Clause(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub name: Option<String>,
    /// The rule as decisions name it in JSON (its name as a JSON string, or its index), then
    /// `,"bucket":`, which follows it in both JSON outputs: one copy per decision, not two.
    pub json_then_bucket: String,
    /// The exposure item's parameter: `;rule="name"` (an RFC 8941 String) or `;rule=INDEX`.
    pub exposure_param: String,
    /// This rule's decisions' outputs, rendered at load ([`crate::pieces`]).
    pub pieces: Vec<crate::pieces::DecisionPieces>,
    pub conditions: Vec<CompiledCondition>,
    pub serve: CompiledServe,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledOverride {
    pub attribute: usize,
    pub values: ValueSet,
    pub variation: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum CompiledDenied {
    Serve(usize),
    Reject(u16),
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledFlag {
    pub key: String,
    /// The key as a JSON string.
    pub key_json: String,
    /// The event's `,"unit":U` (the unit's name as a JSON string, or `null`).
    pub event_unit: String,
    /// Decision JSON parts for a consent reject (no variation).
    pub no_variation_json: crate::json_out::VariationJson,
    /// The outputs of the decisions no rule makes (default, overrides, kill switch, consent
    /// fallback), rendered at load ([`crate::pieces`]).
    pub pieces: Vec<crate::pieces::DecisionPieces>,
    pub enabled: bool,
    pub scope: CompiledScope,
    /// An earlier flag (one of the first 64) with this flag's very `match`: evaluation takes
    /// its answer instead of testing the same scope again (the large benchmark policy's 20
    /// flags all have one scope).
    pub scope_as: Option<usize>,
    /// (consent class index, what to do when denied)
    pub consent: Option<(usize, CompiledDenied)>,
    pub unit: Option<usize>,
    pub unit_name: Option<String>,
    pub salt: String,
    pub variations: Vec<CompiledVariation>,
    pub off_variation: usize,
    pub overrides: Vec<CompiledOverride>,
    pub rules: Vec<CompiledRule>,
    pub default: CompiledServe,
    /// Something in this flag (unit, overrides, rules and their segments, consent) reads
    /// `source_ip`.
    pub reads_source_ip: bool,
}

/// A policy ready to evaluate. Build it with [`crate::load`].
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub(crate) version: String,
    pub(crate) version_json: String,
    /// [`crate::content_hash`] of the text this policy was loaded from, as the audit line and
    /// every exposure event carry it: the version names what the author wrote, the hash the
    /// exact document in force (a fetched consent record set changes it, not the version).
    pub(crate) content_hash: String,
    /// The version as an RFC 8941 string (`"..."`), as every exposure item carries it.
    pub(crate) version_sf: String,
    pub(crate) environment: Option<String>,
    pub(crate) attributes: Vec<AttrSource>,
    pub(crate) consent: Option<CompiledConsent>,
    /// Interned clauses; segments and rules refer to them by index.
    pub(crate) clauses: Vec<CompiledClause>,
    /// Each segment's clause ids.
    pub(crate) segments: Vec<Vec<usize>>,
    pub(crate) flags: Vec<CompiledFlag>,
    pub(crate) flag_infos: Vec<FlagInfo>,
    pub(crate) settings: Settings,
    /// Lower-case names of the request headers the policy reads (context attributes, cookies,
    /// `header_present` scopes), so a host keeps only those.
    pub(crate) header_names: NameSet,
    /// Header names switchyard sets, besides everything under [`OWNED_PREFIX`].
    pub(crate) owned_headers: OwnedNames,
    pub(crate) segment_count: usize,
    pub(crate) consent_tenant_count: usize,
    pub(crate) uses_source_ip: bool,
    /// Some flag's `match` names a host: only then does evaluation work out the request's
    /// host for the scopes (without its port, lower case).
    pub(crate) scopes_read_host: bool,
    pub(crate) source: Option<RemoteSource>,
    pub(crate) consent_source: Option<RemoteSource>,
    pub(crate) awaiting: crate::Awaiting,
}

impl CompiledPolicy {
    /// Which remote sources this policy was compiled as awaiting ([`crate::Awaiting`]).
    pub fn awaiting(&self) -> crate::Awaiting {
        self.awaiting
    }

    /// The same policy with other parts awaiting: nothing compiled depends on them, so a host
    /// need not compile the text again ([`crate::LoadOptions::awaiting`]).
    pub fn with_awaiting(mut self, awaiting: crate::Awaiting) -> CompiledPolicy {
        self.awaiting = awaiting;
        self
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The content hash of the text this policy was loaded from (32 hex digits).
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    pub fn environment(&self) -> Option<&str> {
        self.environment.as_deref()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn flags(&self) -> &[FlagInfo] {
        &self.flag_infos
    }

    /// The policy's own copy of this lower-case request header name, if the policy reads it:
    /// a host holding raw bytes learns whether to keep the header and gets its name as text
    /// without decoding it. A length test rules out most names before any comparison.
    pub fn read_header_name(&self, lowercase_name: &[u8]) -> Option<&str> {
        self.header_names.find(lowercase_name)
    }

    /// What `switchyard check` prints for a valid policy: one line, then a line per flag.
    pub fn summary(&self) -> String {
        let flags = self.flags();
        let disabled = flags.iter().filter(|f| !f.enabled).count();
        let mut text = format!(
            "ok: policy {} ({}): {} flag(s) ({} disabled), {} segment(s), {} tenant consent record(s)",
            self.version(),
            self.environment().unwrap_or("no environment"),
            flags.len(),
            disabled,
            self.segment_count(),
            self.consent_tenant_count(),
        );
        // The hash the filter's audit line and exposure events name for this exact text.
        text.push_str("; hash ");
        text.push_str(&self.content_hash);
        for f in flags {
            text.push_str(&format!(
                "\n  {}: variations {}{}{}",
                f.key,
                f.variations.join(", "),
                f.feature_class
                    .as_deref()
                    .map(|c| format!("; consent class {c}"))
                    .unwrap_or_default(),
                if f.enabled { "" } else { "; DISABLED" }
            ));
        }
        text
    }

    /// Whether anything in the policy reads `source_ip`, so a host can skip looking it up.
    pub fn uses_source_ip(&self) -> bool {
        self.uses_source_ip
    }

    pub fn segment_count(&self) -> usize {
        self.segment_count
    }

    pub fn consent_tenant_count(&self) -> usize {
        self.consent_tenant_count
    }

    /// Where the Envoy filter fetches newer versions of the policy (`source`), if anywhere.
    pub fn source(&self) -> Option<&RemoteSource> {
        self.source.as_ref()
    }

    /// Where the Envoy filter fetches consent records (`consent_source`), if anywhere.
    pub fn consent_source(&self) -> Option<&RemoteSource> {
        self.consent_source.as_ref()
    }

    /// Both remote sources: (`source`, `consent_source`).
    pub fn sources(&self) -> (Option<&RemoteSource>, Option<&RemoteSource>) {
        (self.source(), self.consent_source())
    }

    /// Whether a request header (name in lower case) is one switchyard owns, so a client's
    /// copy must be removed: the route header, the exposure headers, attribute headers, and
    /// everything starting with `x-switchyard-`.
    ///
    /// Takes bytes because the filter asks about every request header before it decodes any
    /// name; a name that is not UTF-8 is owned only under the prefix.
    pub fn is_owned_header(&self, lowercase_name: impl AsRef<[u8]>) -> bool {
        self.owned_headers.contains(lowercase_name.as_ref())
    }
}

/// Resolves names and compiles; every unresolved reference is reported with its place, after
/// the structural errors already found in `errors`.
pub fn compile(
    mut doc: PolicyDoc,
    errors: PolicyErrors,
    options: &crate::LoadOptions,
) -> Result<CompiledPolicy, PolicyErrors> {
    let mut c = Compiler {
        reader_errors: errors.len(),
        errors,
        attr_index: NameIndex::default(),
        attributes: Vec::new(),
        clauses: Vec::new(),
        clause_ids: HashMap::default(),
        regexes: crate::matching::Regexes::default(),
    };
    if let Some(declared) = &options.environment {
        if doc.environment.as_deref() != Some(declared.as_str()) {
            c.errors.push(
                "environment",
                format!(
                    "this policy is for {}, but this proxy declares environment {}; refusing it",
                    doc.environment
                        .as_deref()
                        .map(|e| format!("environment {}", quoted(e)))
                        .unwrap_or_else(|| "no environment".to_string()),
                    quoted(declared)
                ),
            );
        }
    }
    if options.request_only {
        refuse_response_settings(&doc.settings, &mut c.errors);
    }
    if !is_printable_ascii(&doc.version) {
        c.errors.push(
            "version",
            "must be printable ASCII (it travels in HTTP headers)",
        );
    }
    for (name, builtin) in Builtin::ALL {
        c.add_attribute(name, AttrSource::Builtin(builtin));
    }
    // Every header switchyard sets; client copies of these are removed before anything reads
    // the request, so a policy that reads one would see it in `switchyard eval` but never in
    // the filter.
    let owned_headers = OwnedNames::new(
        doc.settings
            .fixed_headers()
            .map(|(_, h)| h)
            .chain(doc.settings.attribute_headers.iter().map(|(_, h)| h))
            .map(String::as_str),
    );
    for (name, source) in &doc.context {
        let place = field("context", name);
        let source = match source {
            Source::Header(h) => {
                if owned_headers.contains(h.as_bytes()) {
                    c.errors
                        .push(field(&place, "header"), owned_header_read(h, &doc.settings));
                }
                AttrSource::Header(h.clone())
            }
            Source::Cookie(n) => AttrSource::Cookie(n.clone()),
            Source::Query(n) => AttrSource::Query(n.clone()),
        };
        c.add_attribute(name, source);
    }

    let (consent, class_index) = match &mut doc.consent {
        Some(consent) => c.consent(consent),
        None => (None, NameIndex::default()),
    };

    let mut segment_index = NameIndex::default();
    let mut segments = Vec::with_capacity(doc.segments.len());
    for (name, clauses) in &doc.segments {
        let compiled = clauses.iter().filter_map(|cl| c.clause(cl)).collect();
        segment_index.insert(name.clone(), segments.len());
        segments.push(compiled);
    }

    let mut seen_keys: HashMap<&str, &str> = HashMap::new();
    let mut flags = Vec::with_capacity(doc.flags.len());
    for flag in &doc.flags {
        let place = flag.place.as_str();
        if let Some(first) = seen_keys.get(flag.key.as_str()) {
            c.errors.push(
                field(place, "key"),
                format!("{} is already the key of {first}", quoted(&flag.key)),
            );
        } else if !flag.key.is_empty() {
            seen_keys.insert(&flag.key, place);
        }
        if let Some(h) = &flag.scope.header_present {
            if owned_headers.contains(h.as_bytes()) {
                c.errors.push(
                    field(&field(place, "match"), "header_present"),
                    owned_header_read(h, &doc.settings),
                );
            }
        }
        if let Some(f) = c.flag(flag, place, &doc.settings, &class_index, &segment_index) {
            flags.push(f);
        }
    }
    c.attribute_headers_in_use(&doc);

    let mut header_names = NameSet::default();
    for source in &c.attributes {
        match source {
            AttrSource::Header(h) => header_names.insert(h),
            AttrSource::Cookie(_) => header_names.insert("cookie"),
            _ => {}
        }
    }
    for h in flags.iter().filter_map(|f| f.scope.header_present.as_ref()) {
        header_names.insert(h);
    }

    let flag_infos = flags
        .iter()
        .map(|f: &CompiledFlag| FlagInfo {
            key: f.key.clone(),
            variations: f.variations.iter().map(|v| v.name.clone()).collect(),
            feature_class: None,
            enabled: f.enabled,
        })
        .zip(doc.flags.iter())
        .map(|(mut info, f)| {
            info.feature_class = f.feature_class.clone();
            info
        })
        .collect();

    let consent_tenant_count = consent.as_ref().map_or(0, |c| c.tenants.len());
    let source_ip = c
        .attributes
        .iter()
        .position(|a| matches!(a, AttrSource::Builtin(Builtin::SourceIp)));
    if let Some(ip) = source_ip {
        let clause_reads = |id: &usize| c.clauses.get(*id).is_some_and(|cl| cl.attribute == ip);
        let consent_reads = consent.as_ref().is_some_and(|k| k.tenant_attribute == ip);
        for f in &mut flags {
            f.reads_source_ip = f.unit == Some(ip)
                || f.overrides.iter().any(|o| o.attribute == ip)
                || (f.consent.is_some() && consent_reads)
                || f.rules
                    .iter()
                    .flat_map(|r| &r.conditions)
                    .any(|cond| match cond {
                        CompiledCondition::Clause(id) => clause_reads(id),
                        CompiledCondition::Segment(s) => segments
                            .get(*s)
                            .is_some_and(|ids: &Vec<usize>| ids.iter().any(clause_reads)),
                    });
        }
    }
    let uses_source_ip = flags.iter().any(|f| f.reads_source_ip);
    share_scopes(&mut flags);
    let scopes_read_host = flags.iter().any(|f| f.scope.host.is_some());
    if doc.consent_source.is_some() && doc.consent.is_none() {
        c.errors.push(
            "consent_source",
            "needs a consent section: the fetched records replace consent.tenants",
        );
    }
    let clauses = std::mem::take(&mut c.clauses);
    let policy = CompiledPolicy {
        version_json: crate::json_out::literal(&doc.version),
        content_hash: String::new(), // set by `load_with`, which has the text
        version_sf: {
            let mut sf = String::new();
            render::sf_string(&mut sf, &doc.version);
            sf
        },
        clauses,
        version: doc.version,
        environment: doc.environment,
        attributes: c.attributes,
        consent,
        segment_count: segments.len(),
        segments,
        flags,
        flag_infos,
        settings: Settings {
            route_header: doc.settings.route_header,
            exposure_header: doc.settings.exposure_header,
            version_header: doc.settings.version_header,
            response_headers: doc.settings.response_headers,
            expose_unit_ids: doc.settings.expose_unit_ids,
            exposure_state: doc.settings.exposure_state,
            exposure_event: doc.settings.exposure_event,
            fallback_header: doc.settings.fallback_header,
            upstream_metrics: doc.settings.upstream_metrics,
            pseudonym_key: doc.settings.pseudonym_key.or(options.pseudonym_key),
        },
        header_names,
        owned_headers,
        consent_tenant_count,
        uses_source_ip,
        scopes_read_host,
        source: doc.source,
        consent_source: doc.consent_source,
        awaiting: options.awaiting,
    };
    c.errors.into_result(policy).map(|mut policy| {
        policy.render_pieces();
        policy
    })
}

/// Points each flag whose `match` an earlier flag (among the first [`SCOPES_SHARED`]) has to
/// the first such flag, whose answer evaluation then reuses.
fn share_scopes(flags: &mut [CompiledFlag]) {
    // At most 64 firsts, so a linear search (no hash map of scopes in the module).
    let mut firsts: Vec<usize> = Vec::new();
    for i in 0..flags.len() {
        let Some(scope) = flags.get(i).map(|f| &f.scope) else {
            break;
        };
        let same = firsts
            .iter()
            .copied()
            .find(|&j| flags.get(j).is_some_and(|f| f.scope == *scope));
        match same {
            Some(j) => {
                if let Some(f) = flags.get_mut(i) {
                    f.scope_as = Some(j);
                }
            }
            None if i < SCOPES_SHARED => firsts.push(i),
            None => {}
        }
    }
}

/// How many flags' scope answers a request keeps (one bit each, in a `u64`).
pub(crate) const SCOPES_SHARED: usize = 64;

/// What makes two clauses the same: attribute, operator, negation and [`values_key`].
type ClauseKey = (usize, Op, bool, Box<[u8]>);

/// A clause's values as one key for interning: each value's length, then its bytes. Compared
/// instead of a copy of the list: a segment of 5,000 values made 5,000 allocations.
fn values_key(values: &[String]) -> Box<[u8]> {
    let mut key = Vec::with_capacity(values.iter().map(|v| v.len() + 8).sum());
    for v in values {
        key.extend_from_slice(&(v.len() as u64).to_le_bytes());
        key.extend_from_slice(v.as_bytes());
    }
    key.into_boxed_slice()
}

struct Compiler {
    errors: PolicyErrors,
    /// How many of `errors` the reader found: the structural ones, which can explain why a
    /// name is missing from the model.
    reader_errors: usize,
    attr_index: NameIndex,
    attributes: Vec<AttrSource>,
    clauses: Vec<CompiledClause>,
    /// Clause identity (attribute, operator, negation, values) → interned id.
    clause_ids: HashMap<ClauseKey, usize, FastBuild>,
    regexes: crate::matching::Regexes,
}

impl Compiler {
    fn add_attribute(&mut self, name: &str, source: AttrSource) {
        self.attr_index
            .insert(name.to_string(), self.attributes.len());
        self.attributes.push(source);
    }

    fn attribute(&mut self, name: &str, place: &str) -> Option<usize> {
        let found = self.attr_index.get(name).copied();
        if found.is_none() {
            self.undefined(
                place,
                &["context"],
                name,
                format!("attribute {} is not defined in context (nor one of path, host, method, source_ip)", quoted(name)),
            );
        }
        found
    }

    /// The problems the reader (document.rs) found.
    fn reader_errors(&self) -> impl Iterator<Item = &crate::error::PolicyError> {
        self.errors.iter().take(self.reader_errors)
    }

    /// Whether the reader reported a problem at `place` or inside it.
    fn reader_reported_within(&self, place: &str) -> bool {
        self.reader_errors().any(|e| {
            e.place.strip_prefix(place).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            })
        })
    }

    /// Reports a reference to `name` that the innermost of `tables` does not define, unless
    /// the reader already explained it: an error at the reference itself (a missing or
    /// malformed name), at one of the tables (not an object, too many entries), or inside
    /// `name`'s own entry (present but broken, so left out of the model). Saying "not
    /// defined" of something the author did define would only mislead.
    fn undefined(&mut self, at: &str, tables: &[&str], name: &str, message: String) {
        self.undefined_written_at(at, Some(at), tables, name, message);
    }

    /// As [`Self::undefined`], for a name written at `written` but reported at `at` (a split's
    /// variations are reported at the split: `flags[0].rules[2].split: variation … is not
    /// defined`), so an error elsewhere in the split does not hide it. `None`: the name is the
    /// key of the object at `at` (a consent record's class), which only an error at the key
    /// itself explains, not one inside the record (a bad `at`).
    fn undefined_written_at(
        &mut self,
        at: &str,
        written: Option<&str>,
        tables: &[&str],
        name: &str,
        message: String,
    ) {
        let entry = tables.last().map(|t| field(t, name));
        let at_reference = match written {
            Some(written) => self.reader_reported_within(written),
            None => self.reader_errors().any(|e| e.place == at),
        };
        let explained = at_reference
            || tables
                .iter()
                .any(|t| self.reader_errors().any(|e| e.place == *t))
            || entry.is_some_and(|entry| self.reader_reported_within(&entry));
        if !explained {
            self.errors.push(at, message);
        }
    }

    /// The consent table. Its tenants are moved out of `consent`: with many thousands, copying
    /// each name and state list (and freeing the model's) was a large part of compiling.
    fn consent(&mut self, consent: &mut Consent) -> (Option<CompiledConsent>, NameIndex) {
        let tenant_attribute =
            self.attribute(&consent.tenant_attribute, "consent.tenant_attribute");
        let class_index: NameIndex = consent
            .classes
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        let modes: Vec<ConsentMode> = consent.classes.iter().map(|(_, m)| *m).collect();
        let mut tenants: FastMap<Box<[ConsentState]>> = FastMap::default();
        tenants.reserve(consent.tenants.len());
        for (tenant, records) in std::mem::take(&mut consent.tenants) {
            let states = match records {
                TenantConsent::States(states) => states,
                TenantConsent::Records(records) => {
                    let mut states = vec![ConsentState::Unset; modes.len()].into_boxed_slice();
                    for record in records {
                        match class_index.get(&record.class) {
                            Some(&ci) => states[ci] = record.state,
                            None => self.undefined_written_at(
                                &field(&field("consent.tenants", &tenant), &record.class),
                                None,
                                &["consent", "consent.classes"],
                                &record.class,
                                format!(
                                    "consent class {} is not defined in consent.classes",
                                    quoted(&record.class)
                                ),
                            ),
                        }
                    }
                    states
                }
            };
            tenants.insert(tenant.into_boxed_str(), states);
        }
        let compiled = tenant_attribute.map(|tenant_attribute| CompiledConsent {
            tenant_attribute,
            modes,
            class_names: consent.classes.iter().map(|(n, _)| n.clone()).collect(),
            tenants,
        });
        (compiled, class_index)
    }

    /// A `settings.attribute_headers` entry no variation's attribute has would never be
    /// written: almost always a misspelt attribute, whose header then keeps its default name.
    fn attribute_headers_in_use(&mut self, doc: &PolicyDoc) {
        for (attribute, _) in &doc.settings.attribute_headers {
            let used = doc.flags.iter().any(|f| {
                f.variations
                    .iter()
                    .any(|v| v.attributes.iter().any(|(a, _)| a == attribute))
            });
            // The reader leaves an attribute out of the model only when its variation's body
            // or attributes object is refused, or its value is not a string: that error says
            // it. A badly named attribute elsewhere hides nothing.
            let lost = || {
                doc.flags.iter().any(|f| {
                    let variations = field(&f.place, "variations");
                    let at = |place: &str| self.reader_errors().any(|e| e.place == place);
                    at(&variations)
                        || f.variations.iter().any(|v| {
                            let body = field(&variations, &v.name);
                            let attributes = field(&body, "attributes");
                            at(&body) || at(&attributes) || at(&field(&attributes, attribute))
                        })
                })
            };
            if !used && !lost() {
                self.undefined(
                    &field("settings.attribute_headers", attribute),
                    &[],
                    attribute,
                    format!(
                        "no variation has an attribute {}, so this header would never be set",
                        quoted(attribute)
                    ),
                );
            }
        }
    }

    /// The plain headers a variation's attributes go out as must differ from each other and
    /// from the route, exposure and version headers: `model_route` and `model-route` both
    /// default to `x-switchyard-attr-model-route`, and the upstream would get two copies.
    fn distinct_attribute_headers(
        &mut self,
        v: &Variation,
        compiled: &CompiledVariation,
        place: &str,
        settings: &SettingsDoc,
    ) {
        let fixed = fixed_headers(settings);
        let mut seen: Vec<(&str, &String)> = Vec::new();
        // `attribute_headers` follows `attributes`, one header each.
        for ((attr, _), (header, _)) in v.attributes.iter().zip(&compiled.attribute_headers) {
            let clash = fixed
                .iter()
                .find(|(_, h)| *h == header)
                .map(|(setting, _)| setting.clone())
                .or_else(|| {
                    seen.iter()
                        .find(|(_, h)| *h == header)
                        .map(|(other, _)| format!("the header of attribute {}", quoted(other)))
                });
            if let Some(other) = clash {
                self.errors.push(
                    field(&field(place, "attributes"), attr),
                    format!("goes out as the header {}, which is also {other}; each header switchyard sets needs its own name", quoted(header)),
                );
            }
            seen.push((attr, header));
        }
    }

    /// Compiles a clause, or finds the identical one compiled before; returns its id.
    fn clause(&mut self, clause: &Clause) -> Option<usize> {
        let place = clause.place.as_str();
        let attribute = self.attribute(&clause.attribute, &field(place, "attribute"))?;
        if matches!(
            self.attributes.get(attribute),
            Some(AttrSource::Builtin(Builtin::Host))
        ) {
            let never = crate::matching::host_values_never_read(clause.op, &clause.values);
            if !never.is_empty() {
                for (i, message) in never {
                    self.errors.push(index(&field(place, "values"), i), message);
                }
                return None;
            }
        }
        let key = (
            attribute,
            clause.op,
            clause.negate,
            values_key(&clause.values),
        );
        if let Some(&id) = self.clause_ids.get(&key) {
            return Some(id);
        }
        let test = match Test::compile(clause.op, &clause.values, &mut self.regexes) {
            Ok(t) => t,
            Err(bad) => {
                for (i, message) in bad {
                    self.errors.push(index(&field(place, "values"), i), message);
                }
                return None;
            }
        };
        let id = self.clauses.len();
        self.clauses.push(CompiledClause {
            attribute,
            test,
            negate: clause.negate,
        });
        self.clause_ids.insert(key, id);
        Some(id)
    }

    fn flag(
        &mut self,
        flag: &Flag,
        place: &str,
        settings: &SettingsDoc,
        class_index: &NameIndex,
        segment_index: &NameIndex,
    ) -> Option<CompiledFlag> {
        let start_errors = self.errors.len();
        if !is_printable_ascii(&flag.key) {
            self.errors.push(
                field(place, "key"),
                "must be printable ASCII (it travels in HTTP headers and metric names)",
            );
        }
        let vplace = field(place, "variations");
        let variation_index: NameIndex = flag
            .variations
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.clone(), i))
            .collect();
        let resolve = |this: &mut Compiler, name: &str, at: &str| -> Option<usize> {
            let found = variation_index.get(name).copied();
            if found.is_none() {
                this.undefined(
                    at,
                    &[&vplace],
                    name,
                    format!("variation {} is not defined in {vplace}", quoted(name)),
                );
            }
            found
        };
        for v in &flag.variations {
            if !is_printable_ascii(&v.name) {
                self.errors.push(
                    field(&vplace, &v.name),
                    "a variation name must be printable ASCII (it travels in HTTP headers)",
                );
            }
        }

        let off_variation = resolve(self, &flag.off_variation, &field(place, "off_variation"));
        let unit = flag
            .unit
            .as_deref()
            .and_then(|u| self.attribute(u, &field(place, "unit")));

        let consent = match (&flag.feature_class, &flag.on_consent_denied) {
            (Some(class), denied) => {
                let class_place = field(place, "feature_class");
                let ci = class_index.get(class).copied();
                if ci.is_none() {
                    self.undefined(
                        &class_place,
                        &["consent", "consent.classes"],
                        class,
                        format!(
                            "consent class {} is not defined in consent.classes",
                            quoted(class)
                        ),
                    );
                }
                let action = match denied {
                    None => {
                        // Present but broken: the reader said what is wrong with it.
                        let denied_place = field(place, "on_consent_denied");
                        self.undefined(
                            &denied_place,
                            &[],
                            "",
                            "is required when feature_class is set: say what an opted-out tenant gets ({\"serve\": VARIATION} or {\"reject\": {\"status\": 403}})".to_string(),
                        );
                        None
                    }
                    Some(DeniedAction::Serve(v)) => {
                        resolve(self, v, &field(&field(place, "on_consent_denied"), "serve"))
                            .map(CompiledDenied::Serve)
                    }
                    Some(DeniedAction::Reject { status }) => Some(CompiledDenied::Reject(*status)),
                };
                ci.zip(action)
            }
            (None, Some(_)) => {
                self.errors.push(
                    field(place, "on_consent_denied"),
                    "has no effect without feature_class",
                );
                None
            }
            (None, None) => None,
        };

        let mut overrides = Vec::with_capacity(flag.overrides.len());
        for o in &flag.overrides {
            let oplace = o.place.as_str();
            let attribute = self.attribute(&o.attribute, &field(oplace, "attribute"));
            let variation = resolve(self, &o.serve, &field(oplace, "serve"));
            if let (Some(attribute), Some(variation)) = (attribute, variation) {
                overrides.push(CompiledOverride {
                    attribute,
                    values: ValueSet::new(&o.values),
                    variation,
                });
            }
        }

        let mut rules = Vec::with_capacity(flag.rules.len());
        for rule in &flag.rules {
            let rplace = rule.place.as_str();
            if let Some(name) = &rule.name {
                if !is_printable_ascii(name) {
                    self.errors.push(
                        field(rplace, "name"),
                        "a rule name must be printable ASCII (it travels in HTTP headers)",
                    );
                }
            }
            let mut conditions = Vec::with_capacity(rule.when.len());
            for cond in &rule.when {
                match cond {
                    Condition::Segment(name, cplace) => match segment_index.get(name) {
                        Some(&s) => conditions.push(CompiledCondition::Segment(s)),
                        None => self.undefined(
                            &field(cplace, "segment"),
                            &["segments"],
                            name,
                            format!("segment {} is not defined in segments", quoted(name)),
                        ),
                    },
                    Condition::Clause(cl) => {
                        if let Some(cc) = self.clause(cl) {
                            conditions.push(CompiledCondition::Clause(cc));
                        }
                    }
                }
            }
            let serve = rule
                .serve
                .as_ref()
                .and_then(|s| self.serve(s, rplace, flag, &variation_index));
            if let Some(serve) = serve {
                let rule_ref = RuleRef::of(rule.name.as_deref(), rules.len());
                let (mut json, mut exposure_param) = (String::new(), String::new());
                crate::json_out::push_rule_ref(&mut json, rule_ref);
                json.push_str(crate::json_out::BUCKET_KEY);
                crate::render::push_exposure_rule_param(&mut exposure_param, rule_ref);
                rules.push(CompiledRule {
                    json_then_bucket: json,
                    exposure_param,
                    pieces: Vec::new(), // rendered once the policy is whole
                    name: rule.name.clone(),
                    conditions,
                    serve,
                });
            }
        }
        let dplace = field(place, "default");
        let default = flag
            .default
            .as_ref()
            .and_then(|d| self.serve(d, &dplace, flag, &variation_index));

        let variations: Vec<CompiledVariation> = flag
            .variations
            .iter()
            .map(|v| compile_variation(&flag.key, v, settings))
            .collect();
        for (v, compiled) in flag.variations.iter().zip(&variations) {
            let vplace = field(&variations_place(place), &v.name);
            self.distinct_attribute_headers(v, compiled, &vplace, settings);
        }

        if self.errors.len() > start_errors {
            return None;
        }
        Some(CompiledFlag {
            key_json: crate::json_out::literal(&flag.key),
            event_unit: crate::json_out::event_unit(flag.unit.as_deref()),
            no_variation_json: crate::json_out::VariationJson::new(&flag.key, None, None, &[]),
            pieces: Vec::new(), // rendered once the policy is whole
            key: flag.key.clone(),
            enabled: flag.enabled,
            scope: CompiledScope {
                path_prefix: flag.scope.path_prefix.clone(),
                host: flag.scope.host.clone(),
                method: flag.scope.method.clone(),
                header_present: flag.scope.header_present.clone(),
            },
            scope_as: None, // set once the policy is whole
            consent,
            unit,
            unit_name: flag.unit.clone(),
            salt: flag.salt.clone().unwrap_or_else(|| flag.key.clone()),
            variations,
            off_variation: off_variation?,
            overrides,
            rules,
            default: default?,
            reads_source_ip: false, // set once every flag is compiled
        })
    }

    fn serve(
        &mut self,
        serve: &Serve,
        place: &str,
        flag: &Flag,
        variations: &NameIndex,
    ) -> Option<CompiledServe> {
        match serve {
            Serve::Variation(name) => match variations.get(name) {
                Some(&v) => Some(CompiledServe::Variation(v)),
                None => {
                    let vplace = variations_place(place);
                    self.undefined(
                        &field(place, "serve"),
                        &[&vplace],
                        name,
                        format!("variation {} is not defined in {vplace}", quoted(name)),
                    );
                    None
                }
            },
            Serve::Split(entries) => {
                let splace = field(place, "split");
                if flag.unit.is_none() {
                    self.errors.push(
                        &splace,
                        "a split needs the flag's assignment unit: set \"unit\" on the flag",
                    );
                }
                let mut ends = Vec::with_capacity(entries.len());
                let mut total = 0u64;
                let mut ok = true;
                let mut seen = HashSet::new();
                for e in entries {
                    match variations.get(&e.variation) {
                        Some(&v) => {
                            if !seen.insert(v) {
                                self.errors.push(
                                    &splace,
                                    format!("variation {} is listed twice", quoted(&e.variation)),
                                );
                                ok = false;
                            }
                            total += e.weight;
                            ends.push((v, total));
                        }
                        None => {
                            let vplace = variations_place(place);
                            self.undefined_written_at(
                                &splace,
                                Some(&field(&index(&splace, e.index), "variation")),
                                &[&vplace],
                                &e.variation,
                                format!(
                                    "variation {} is not defined in {vplace}",
                                    quoted(&e.variation)
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                (ok && total > 0 && flag.unit.is_some())
                    .then_some(CompiledServe::Split(CompiledSplit { total, ends }))
            }
        }
    }
}

/// The settings that make the filter act on the response, refused for a host that never calls
/// it there ([`crate::LoadOptions::request_only`]): one error each, naming the setting.
fn refuse_response_settings(settings: &SettingsDoc, errors: &mut PolicyErrors) {
    type Setting = fn(&SettingsDoc) -> bool;
    let on_response: [(&str, Setting); 3] = [
        ("exposure_event", |s| s.exposure_event),
        ("upstream_metrics", |s| s.upstream_metrics),
        ("response_headers", |s| s.response_headers),
    ];
    // Whether a setting is on unless turned off comes from the defaults themselves.
    let defaults = SettingsDoc::default();
    for (key, setting) in on_response {
        if setting(settings) {
            let default = setting(&defaults);
            errors.push(
                field("settings", key),
                format!(
                    "needs the response, which the request-only module \
                     (switchyard_plugin_request_only.wasm) never sees; set it to false{} or \
                     load switchyard_plugin.wasm",
                    if default {
                        " (it defaults to true)"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
}

/// The headers switchyard sets under fixed settings, with the place of the setting that names
/// each (`settings.route_header`, ...).
fn fixed_headers(settings: &SettingsDoc) -> Vec<(String, &String)> {
    settings
        .fixed_headers()
        .map(|(key, h)| (field("settings", key), h))
        .collect()
}

/// The error for a policy reading a header switchyard owns. It names the setting that makes
/// the header switchyard's, since either side may be the mistake (a context header that is
/// right, and a `version_header` set to it by accident).
fn owned_header_read(header: &str, settings: &SettingsDoc) -> String {
    let owner = fixed_headers(settings)
        .into_iter()
        .find(|(_, h)| *h == header)
        .map(|(setting, _)| setting)
        .or_else(|| {
            settings
                .attribute_headers
                .iter()
                .find(|(_, h)| h == header)
                .map(|(attribute, _)| field("settings.attribute_headers", attribute))
        })
        .unwrap_or_else(|| format!("every header starting with {OWNED_PREFIX}"));
    format!(
        "{} is a header switchyard owns ({owner}); client copies are removed before the policy \
         reads anything",
        quoted(header)
    )
}

/// `flags[3].rules[2]` → `flags[3].variations`.
fn variations_place(place: &str) -> String {
    let flag = place.split('.').next().unwrap_or(place);
    format!("{flag}.variations")
}

/// The plain header an attribute goes out as: `settings.attribute_headers`, else the default.
fn attribute_header(attribute: &str, settings: &SettingsDoc) -> String {
    settings
        .attribute_headers
        .iter()
        .find(|(a, _)| a == attribute)
        .map(|(_, h)| h.clone())
        .unwrap_or_else(|| render::default_attribute_header(attribute))
}

fn compile_variation(flag_key: &str, v: &Variation, settings: &SettingsDoc) -> CompiledVariation {
    let attribute_headers = v
        .attributes
        .iter()
        .filter(|_| settings.plain_attribute_headers)
        .map(|(name, value)| (attribute_header(name, settings), value.clone()))
        .collect();
    CompiledVariation {
        name: v.name.clone(),
        cluster: v.cluster.clone(),
        attributes: v.attributes.clone(),
        json: crate::json_out::VariationJson::new(
            flag_key,
            Some(&v.name),
            v.cluster.as_deref(),
            &v.attributes,
        ),
        exposure_item: render::exposure_item_start(flag_key, &v.name),
        exposure_attributes: render::exposure_attribute_params(&v.attributes),
        attribute_headers,
    }
}
