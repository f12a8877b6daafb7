//! Reads a policy document from JSON into the [`PolicyDoc`] model, checking its structure and
//! collecting every problem with its place instead of stopping at the first. Name resolution
//! (does this variation exist?) happens in `compile`, which reports with the same places.

use crate::tree::{Object, Value};

use crate::error::{quoted, PolicyErrors};
use crate::limits::*;
use crate::model::*;

/// Parses and structurally checks a policy document. The model comes back even when there are
/// errors (with the broken parts left out), so name resolution can report its problems too.
pub fn parse(json: &str) -> (Option<PolicyDoc>, PolicyErrors) {
    let mut errors = PolicyErrors::default();
    if json.len() > MAX_DOCUMENT_BYTES {
        errors.push(
            "",
            format!(
                "the document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
                json.len()
            ),
        );
        return (None, errors);
    }
    // Said plainly rather than as "expected value at line 1 column 1". Refused, not skipped:
    // the tools that push a policy (Python's json among them) refuse it too.
    if json.starts_with('\u{feff}') {
        errors.push(
            "",
            "the document starts with a byte-order mark (U+FEFF), which a JSON text may not; \
             save it as UTF-8 without one",
        );
        return (None, errors);
    }
    // The tree lives in this arena until the model is read from it, then goes in one free.
    let arena = bumpalo::Bump::new();
    let value = match crate::repeated_keys::parse(json, &arena) {
        Ok((value, repeats)) => {
            for place in repeats.places {
                errors.push(
                    place,
                    "appears more than once in its object; the copies would silently replace \
                     each other, so keep one",
                );
            }
            errors.add_unlisted(repeats.unlisted);
            value
        }
        Err(e) => {
            errors.push("", format!("not valid JSON: {e}"));
            return (None, errors);
        }
    };
    let mut reader = Reader { errors };
    let doc = reader.policy(&value);
    (Some(doc), reader.errors)
}

/// A place in the document, such as `flags[0].rules[2]`. A key that is not a plain name is
/// quoted, and one longer than any valid name is cut (`t["kkk… (1000000 bytes)"]`): it is
/// refused anyway, and a place is built for every problem under it.
pub fn field(place: &str, key: &str) -> String {
    let plain = name_fits(key)
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    // Built with pushes, not `format!`: a place is built for every record of a consent table
    // that may hold tens of thousands, and `core::fmt` cost a third of loading such a policy.
    let mut out = String::with_capacity(place.len() + key.len() + 4);
    out.push_str(place);
    if plain {
        if !place.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    } else {
        out.push('[');
        out.push_str(&quoted(key));
        out.push(']');
    }
    out
}

pub fn index(place: &str, i: usize) -> String {
    let mut digits = itoa::Buffer::new();
    let i = digits.format(i);
    let mut out = String::with_capacity(place.len() + i.len() + 2);
    out.push_str(place);
    out.push('[');
    out.push_str(i);
    out.push(']');
    out
}

struct Reader {
    errors: PolicyErrors,
}

/// What a JSON value is, as a message names it: `a string`, `an array`.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Reader {
    fn err(&mut self, place: &str, message: impl Into<String>) {
        self.errors.push(place, message);
    }

    /// An object with only the allowed fields; unknown fields are errors (usually typos).
    fn object<'v>(
        &mut self,
        v: &'v Value<'v>,
        place: &str,
        allowed: &[&str],
    ) -> Option<&'v Object<'v>> {
        let Value::Object(map) = v else {
            self.err(place, format!("expected an object, found {}", kind(v)));
            return None;
        };
        for key in map.keys() {
            if !allowed.contains(&key) {
                self.err(
                    &field(place, key),
                    format!("unknown field (expected one of: {})", allowed.join(", ")),
                );
            }
        }
        Some(map)
    }

    /// An object whose keys are names chosen by the author (variations, segments, tenants…).
    fn named_map<'v>(
        &mut self,
        v: &'v Value<'v>,
        place: &str,
        max: usize,
    ) -> Option<&'v Object<'v>> {
        let Value::Object(map) = v else {
            self.err(place, format!("expected an object, found {}", kind(v)));
            return None;
        };
        if map.len() > max {
            self.err(
                place,
                format!("has {} entries; the limit is {max}", map.len()),
            );
            return None;
        }
        Some(map)
    }

    fn required<'v>(
        &mut self,
        map: &'v Object<'v>,
        key: &str,
        place: &str,
    ) -> Option<&'v Value<'v>> {
        let v = map.get(key);
        if v.is_none() {
            self.err(&field(place, key), "is required");
        }
        v
    }

    fn string(&mut self, v: &Value, place: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.to_string()),
            other => {
                self.err(place, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    /// A non-empty name of bounded length.
    fn name(&mut self, v: &Value, place: &str) -> Option<String> {
        let s = self.string(v, place)?;
        self.check_name(&s, place).then_some(s)
    }

    fn check_name(&mut self, s: &str, place: &str) -> bool {
        if name_fits(s) {
            return true;
        }
        if s.is_empty() {
            self.err(place, "must not be empty");
        } else {
            self.err(
                place,
                format!("is {} bytes long; the limit is {MAX_NAME_LEN}", s.len()),
            );
        }
        false
    }

    fn boolean(&mut self, v: &Value, place: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.err(
                    place,
                    format!("expected true or false, found {}", kind(other)),
                );
                None
            }
        }
    }

    fn array<'v>(&mut self, v: &'v Value<'v>, place: &str, max: usize) -> Option<&'v [Value<'v>]> {
        match v {
            Value::Array(items) if items.len() > max => {
                self.err(
                    place,
                    format!("has {} entries; the limit is {max}", items.len()),
                );
                None
            }
            Value::Array(items) => Some(items),
            other => {
                self.err(place, format!("expected an array, found {}", kind(other)));
                None
            }
        }
    }

    fn policy(&mut self, v: &Value) -> PolicyDoc {
        let mut doc = PolicyDoc::default();
        let Some(map) = self.object(
            v,
            "",
            &[
                "version",
                "environment",
                "context",
                "consent",
                "segments",
                "flags",
                "settings",
                "source",
                "consent_source",
            ],
        ) else {
            return doc;
        };
        if let Some(v) = self.required(map, "version", "") {
            doc.version = self.name(v, "version").unwrap_or_default();
        }
        if let Some(v) = map.get("environment") {
            doc.environment = self.name(v, "environment");
        }
        if let Some(v) = map.get("context") {
            doc.context = self.context(v);
        }
        if let Some(v) = map.get("consent") {
            doc.consent = self.consent(v);
        }
        if let Some(v) = map.get("segments") {
            doc.segments = self.segments(v);
        }
        if let Some(v) = self.required(map, "flags", "") {
            if let Some(items) = self.array(v, "flags", MAX_FLAGS) {
                doc.flags = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, f)| self.flag(f, &index("flags", i)))
                    .collect();
            }
        }
        if let Some(v) = map.get("settings") {
            doc.settings = self.settings(v);
        }
        if let Some(v) = map.get("source") {
            doc.source = self.remote_source(v, "source", "off");
        }
        if let Some(v) = map.get("consent_source") {
            doc.consent_source = self.remote_source(v, "consent_source", "deny");
        }
        doc
    }

    /// `{"cluster", "path", "authority"?, "interval_ms"?, "timeout_ms"?}`.
    /// A remote source; `safe` is the word for its safe `until_fetched` (`off`, `deny`).
    fn remote_source(&mut self, v: &Value, place: &str, safe: &str) -> Option<RemoteSource> {
        let map = self.object(
            v,
            place,
            &[
                "cluster",
                "path",
                "authority",
                "interval_ms",
                "timeout_ms",
                "until_fetched",
            ],
        )?;
        let before = self.errors.len();
        let cluster = self
            .required(map, "cluster", place)
            .and_then(|c| self.name(c, &field(place, "cluster")));
        let path = self
            .required(map, "path", place)
            .and_then(|p| self.string(p, &field(place, "path")));
        if let Some(p) = &path {
            if !p.starts_with('/') || !is_visible_ascii(p) || p.len() > 2048 {
                self.err(
                    &field(place, "path"),
                    "must be an absolute request path starting with \"/\" (visible ASCII, no spaces, at most 2048 bytes)",
                );
            }
        }
        let authority = match map.get("authority") {
            Some(a) => {
                let a = self.name(a, &field(place, "authority"));
                if let Some(text) = &a {
                    if !is_visible_ascii(text) {
                        self.err(
                            &field(place, "authority"),
                            "must be a host name (visible ASCII, no spaces)",
                        );
                    }
                }
                a
            }
            None => cluster.clone(),
        };
        let interval_ms = match map.get("interval_ms") {
            Some(n) => self.millis(
                n,
                &field(place, "interval_ms"),
                RemoteSource::MIN_INTERVAL_MS,
                RemoteSource::MAX_INTERVAL_MS,
            ),
            None => Some(RemoteSource::DEFAULT_INTERVAL_MS),
        };
        let timeout_ms = match map.get("timeout_ms") {
            Some(n) => self.millis(
                n,
                &field(place, "timeout_ms"),
                1,
                RemoteSource::MAX_TIMEOUT_MS,
            ),
            None => interval_ms.map(|i| i.min(RemoteSource::DEFAULT_TIMEOUT_MS)),
        };
        if let (Some(interval), Some(timeout)) = (interval_ms, timeout_ms) {
            if timeout > interval {
                self.err(
                    &field(place, "timeout_ms"),
                    format!("is {timeout}, more than interval_ms ({interval}); a fetch must end before the next one starts"),
                );
            }
        }
        let uplace = field(place, "until_fetched");
        let until_fetched = match map.get("until_fetched").map(|u| self.string(u, &uplace)) {
            None => Some(UntilFetched::Safe),
            Some(None) => None,
            Some(Some(word)) if word == safe => Some(UntilFetched::Safe),
            Some(Some(word)) if word == "bootstrap" => Some(UntilFetched::Bootstrap),
            Some(Some(word)) => {
                self.err(
                    &uplace,
                    format!(
                        "{} is not one of \"{safe}\" (the default) or \"bootstrap\"",
                        quoted(&word)
                    ),
                );
                None
            }
        };
        if self.errors.len() != before {
            return None;
        }
        Some(RemoteSource {
            cluster: cluster?,
            path: path?,
            authority: authority?,
            interval_ms: interval_ms?,
            timeout_ms: timeout_ms?,
            until_fetched: until_fetched?,
        })
    }

    /// A whole number of milliseconds in `min..=max`.
    fn millis(&mut self, v: &Value, place: &str, min: u32, max: u32) -> Option<u32> {
        let n = match v {
            Value::Number(n) => whole(n),
            other => {
                self.err(
                    place,
                    format!("expected a number of milliseconds, found {}", kind(other)),
                );
                return None;
            }
        };
        match n.and_then(|n| u32::try_from(n).ok()) {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.err(
                    place,
                    format!("must be a whole number of milliseconds from {min} to {max}"),
                );
                None
            }
        }
    }

    fn context(&mut self, v: &Value) -> Vec<(String, Source)> {
        let Some(map) = self.named_map(v, "context", MAX_ATTRIBUTES) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, spec) in map {
            let place = field("context", name);
            if !self.check_name(name, &place) {
                continue;
            }
            if Builtin::ALL.iter().any(|(b, _)| *b == name) {
                self.err(
                    &place,
                    format!(
                        "{} is a built-in attribute and cannot be redefined",
                        quoted(name)
                    ),
                );
                continue;
            }
            let Some(spec_map) = self.object(spec, &place, &["header", "cookie", "query"]) else {
                continue;
            };
            if spec_map.len() != 1 {
                self.err(
                    &place,
                    "must name exactly one source: {\"header\": NAME}, {\"cookie\": NAME} or {\"query\": NAME}",
                );
                continue;
            }
            let source = if let Some(h) = spec_map.get("header") {
                self.request_header(h, &field(&place, "header"))
                    .map(Source::Header)
            } else if let Some(c) = spec_map.get("cookie") {
                self.name(c, &field(&place, "cookie")).map(Source::Cookie)
            } else if let Some(q) = spec_map.get("query") {
                self.name(q, &field(&place, "query")).map(Source::Query)
            } else {
                None
            };
            if let Some(source) = source {
                out.push((name.to_string(), source));
            }
        }
        out
    }

    fn consent(&mut self, v: &Value) -> Option<Consent> {
        let map = self.object(v, "consent", &["tenant_attribute", "classes", "tenants"])?;
        let tenant_attribute = self
            .required(map, "tenant_attribute", "consent")
            .and_then(|v| self.name(v, "consent.tenant_attribute"))
            .unwrap_or_default();
        let mut classes = Vec::new();
        if let Some(cv) = self.required(map, "classes", "consent") {
            if let Some(cmap) = self.named_map(cv, "consent.classes", MAX_CONSENT_CLASSES) {
                for (name, spec) in cmap {
                    let place = field("consent.classes", name);
                    if !self.check_name(name, &place) {
                        continue;
                    }
                    let Some(spec) = self.object(spec, &place, &["mode"]) else {
                        continue;
                    };
                    let mode = match self
                        .required(spec, "mode", &place)
                        .and_then(|m| self.string(m, &field(&place, "mode")))
                        .as_deref()
                    {
                        Some("opt_in") => ConsentMode::OptIn,
                        Some("opt_out") => ConsentMode::OptOut,
                        Some(other) => {
                            self.err(
                                &field(&place, "mode"),
                                format!(
                                    "{} is not a consent mode (expected opt_in or opt_out)",
                                    quoted(other)
                                ),
                            );
                            continue;
                        }
                        None => continue,
                    };
                    classes.push((name.to_string(), mode));
                }
            }
        }
        let mut tenants = Vec::new();
        if let Some(tv) = map.get("tenants") {
            if let Some(tmap) = self.named_map(tv, "consent.tenants", MAX_CONSENT_TENANTS) {
                tenants.reserve(tmap.len());
                for (tenant, records) in tmap {
                    let read = match well_formed_records(tenant, records, &classes) {
                        Some(states) => Some(TenantConsent::States(states)),
                        None => self
                            .tenant_records(tenant, records)
                            .map(TenantConsent::Records),
                    };
                    if let Some(read) = read {
                        tenants.push((tenant.to_string(), read));
                    }
                }
            }
        }
        Some(Consent {
            tenant_attribute,
            classes,
            tenants,
        })
    }

    /// A tenant's records, each problem reported with its place: the path for a tenant that
    /// [`well_formed_records`] does not accept. `None` leaves the tenant out.
    fn tenant_records(&mut self, tenant: &str, records: &Value) -> Option<Vec<ConsentRecord>> {
        let place = field("consent.tenants", tenant);
        if !self.check_name(tenant, &place) {
            return None;
        }
        let rmap = self.named_map(records, &place, MAX_CONSENT_CLASSES)?;
        let mut list = Vec::with_capacity(rmap.len());
        for (class, record) in rmap {
            let rplace = field(&place, class);
            if let Some(state) = self.consent_record(record, &rplace) {
                list.push(ConsentRecord {
                    class: class.to_string(),
                    state,
                });
            }
        }
        Some(list)
    }

    fn consent_record(&mut self, v: &Value, place: &str) -> Option<ConsentState> {
        let map = self.object(v, place, &["state", "actor", "at"])?;
        // Who set the record and when are what an audit of an opt-out asks for: required.
        if let Some(actor) = self.required(map, "actor", place) {
            let actor_place = field(place, "actor");
            if self
                .string(actor, &actor_place)
                .is_some_and(|a| a.trim().is_empty())
            {
                self.err(&actor_place, "must name who set the record");
            }
        }
        if let Some(at) = self.required(map, "at", place) {
            let at_place = field(place, "at");
            if let Some(at) = self.string(at, &at_place) {
                if !is_rfc3339(&at) {
                    self.err(
                        &at_place,
                        format!(
                            "{} is not an RFC 3339 timestamp (like 2026-05-12T09:00:00Z)",
                            quoted(&at)
                        ),
                    );
                }
            }
        }
        let state_place = field(place, "state");
        let state = self
            .required(map, "state", place)
            .and_then(|s| self.string(s, &state_place))?;
        let parsed = consent_state(&state);
        if parsed.is_none() {
            self.err(
                &state_place,
                format!(
                    "{} is not a consent state (expected opt_in, opt_out or unset)",
                    quoted(&state)
                ),
            );
        }
        parsed
    }

    fn segments(&mut self, v: &Value) -> Vec<(String, Vec<Clause>)> {
        let Some(map) = self.named_map(v, "segments", MAX_SEGMENTS) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, clauses) in map {
            let place = field("segments", name);
            if !self.check_name(name, &place) {
                continue;
            }
            let Some(items) = self.array(clauses, &place, MAX_CONDITIONS) else {
                continue;
            };
            if items.is_empty() {
                self.err(&place, "a segment needs at least one clause");
            }
            let list = items
                .iter()
                .enumerate()
                .filter_map(|(i, c)| self.clause(c, &index(&place, i)))
                .collect();
            out.push((name.to_string(), list));
        }
        out
    }

    fn clause(&mut self, v: &Value, place: &str) -> Option<Clause> {
        let map = self.object(v, place, &["attribute", "op", "values", "negate"])?;
        let attribute = self
            .required(map, "attribute", place)
            .and_then(|a| self.name(a, &field(place, "attribute")));
        let op_place = field(place, "op");
        let op = match self
            .required(map, "op", place)
            .and_then(|o| self.string(o, &op_place))
        {
            Some(name) => match Op::parse(&name) {
                Some(op) => Some(op),
                None => {
                    let known: Vec<&str> = Op::ALL.iter().map(|(n, _)| *n).collect();
                    self.err(
                        &op_place,
                        format!(
                            "{} is not an operator (expected one of: {})",
                            quoted(&name),
                            known.join(", ")
                        ),
                    );
                    None
                }
            },
            None => None,
        };
        // An unknown operator compares nothing, so its numbers are let through as numbers.
        let as_text = !matches!(op, None | Some(Op::Lt | Op::Lte | Op::Gt | Op::Gte));
        let values = match map.get("values") {
            Some(v) => self.values(v, &field(place, "values"), as_text)?,
            None => Vec::new(),
        };
        let negate = match map.get("negate") {
            Some(n) => self.boolean(n, &field(place, "negate")).unwrap_or(false),
            None => false,
        };
        let op = op?;
        let values_place = field(place, "values");
        // Counted as written, so a refused value is not also reported as a missing one.
        let written = map
            .get("values")
            .and_then(Value::as_array)
            .map_or(0, <[Value]>::len);
        match op {
            Op::Exists if written > 0 => {
                self.err(&values_place, "\"exists\" takes no values");
            }
            Op::Exists => {}
            Op::Lt
            | Op::Lte
            | Op::Gt
            | Op::Gte
            | Op::SemverLt
            | Op::SemverLte
            | Op::SemverGt
            | Op::SemverGte
            | Op::SemverEq
                if written != 1 =>
            {
                self.err(
                    &values_place,
                    format!("this operator compares with exactly one value; found {written}"),
                );
            }
            _ if written == 0 => {
                self.err(&values_place, "needs at least one value");
            }
            _ => {}
        }
        Some(Clause {
            place: place.to_string(),
            attribute: attribute?,
            op,
            values,
            negate,
        })
    }

    /// Clause and override values: strings, or JSON numbers. Where the values are compared as
    /// text (`as_text`: every operator but `lt` `lte` `gt` `gte`, and overrides), only a
    /// whole number is taken: the reader keeps a number's value, not how it was written, so
    /// `1.10` would be compared as "1.1" and `1e3` as "1000.0", silently missing the header
    /// the author meant. Such a number is refused, asking for a string.
    fn values(&mut self, v: &Value, place: &str, as_text: bool) -> Option<Vec<String>> {
        let items = self.array(v, place, MAX_VALUES)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.to_string()),
                Value::Number(n) if as_text && n.is_f64() => self.err(
                    &index(place, i),
                    "a number with a fraction or an exponent is compared as text here, but its \
                     text is not kept as written (1.10 would be read as \"1.1\"); write it as \
                     a string",
                ),
                Value::Number(n) => out.push(n.to_string()),
                other => self.err(
                    &index(place, i),
                    format!("expected a string or a number, found {}", kind(other)),
                ),
            }
        }
        Some(out)
    }

    fn flag(&mut self, v: &Value, place: &str) -> Option<Flag> {
        let map = self.object(
            v,
            place,
            &[
                "key",
                "description",
                "enabled",
                "match",
                "feature_class",
                "unit",
                "salt",
                "variations",
                "off_variation",
                "on_consent_denied",
                "overrides",
                "rules",
                "default",
            ],
        )?;
        let key = self
            .required(map, "key", place)
            .and_then(|k| self.name(k, &field(place, "key")))
            .unwrap_or_default();
        if let Some(d) = map.get("description") {
            self.string(d, &field(place, "description"));
        }
        let enabled = map
            .get("enabled")
            .and_then(|e| self.boolean(e, &field(place, "enabled")))
            .unwrap_or(true);
        let scope = map
            .get("match")
            .map(|m| self.scope(m, &field(place, "match")))
            .unwrap_or_default();
        let feature_class = map
            .get("feature_class")
            .and_then(|f| self.name(f, &field(place, "feature_class")));
        let unit = map
            .get("unit")
            .and_then(|u| self.name(u, &field(place, "unit")));
        let salt = map
            .get("salt")
            .and_then(|s| self.string(s, &field(place, "salt")));
        let variations = self
            .required(map, "variations", place)
            .map(|v| self.variations(v, &field(place, "variations")))
            .unwrap_or_default();
        let off_variation = self
            .required(map, "off_variation", place)
            .and_then(|o| self.name(o, &field(place, "off_variation")))
            .unwrap_or_default();
        let on_consent_denied = map
            .get("on_consent_denied")
            .and_then(|d| self.denied_action(d, &field(place, "on_consent_denied")));
        let overrides = match map.get("overrides") {
            Some(o) => {
                let oplace = field(place, "overrides");
                self.array(o, &oplace, MAX_OVERRIDES)
                    .map(|items| {
                        items
                            .iter()
                            .enumerate()
                            .filter_map(|(i, o)| self.override_entry(o, &index(&oplace, i)))
                            .collect()
                    })
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        let rules = match map.get("rules") {
            Some(r) => {
                let rplace = field(place, "rules");
                self.array(r, &rplace, MAX_RULES)
                    .map(|items| {
                        items
                            .iter()
                            .enumerate()
                            .filter_map(|(i, r)| self.rule(r, &index(&rplace, i)))
                            .collect()
                    })
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        let default = self.required(map, "default", place).and_then(|d| {
            let dplace = field(place, "default");
            let dmap = self.object(d, &dplace, &["serve", "split"])?;
            self.serve(dmap, &dplace)
        });
        Some(Flag {
            place: place.to_string(),
            key,
            enabled,
            scope,
            feature_class,
            unit,
            salt,
            variations,
            off_variation,
            on_consent_denied,
            overrides,
            rules,
            default,
        })
    }

    fn scope(&mut self, v: &Value, place: &str) -> Scope {
        let mut scope = Scope::default();
        let Some(map) = self.object(
            v,
            place,
            &["path_prefix", "host", "method", "header_present"],
        ) else {
            return scope;
        };
        scope.path_prefix = map
            .get("path_prefix")
            .and_then(|p| self.string(p, &field(place, "path_prefix")));
        if let Some(p) = &scope.path_prefix {
            if !p.starts_with('/') {
                self.err(&field(place, "path_prefix"), "must start with \"/\"");
            }
        }
        let host_place = field(place, "host");
        scope.host = map
            .get("host")
            .and_then(|h| self.name(h, &host_place))
            .map(|h| h.to_ascii_lowercase());
        if let Some(host) = &scope.host {
            let bare = crate::request::host_without_port(host);
            if bare != host {
                // A request's host is compared without its port, so this one would never match.
                self.err(
                    &host_place,
                    format!(
                        "the request's host is compared without its port, so {} never matches; \
                         write {}",
                        quoted(host),
                        quoted(bare)
                    ),
                );
            }
        }
        scope.method = map
            .get("method")
            .and_then(|m| self.name(m, &field(place, "method")))
            .map(|m| m.to_ascii_uppercase());
        scope.header_present = map
            .get("header_present")
            .and_then(|h| self.request_header(h, &field(place, "header_present")));
        scope
    }

    fn variations(&mut self, v: &Value, place: &str) -> Vec<Variation> {
        let Some(map) = self.named_map(v, place, MAX_VARIATIONS) else {
            return Vec::new();
        };
        if map.is_empty() {
            self.err(place, "a flag needs at least one variation");
        }
        let mut out = Vec::with_capacity(map.len());
        for (name, spec) in map {
            let vplace = field(place, name);
            self.check_name(name, &vplace);
            // The name is kept even when its body is broken, so references to it do not
            // produce a second, misleading "not defined" error.
            let mut variation = Variation {
                name: name.to_string(),
                ..Variation::default()
            };
            if let Some(smap) = self.object(spec, &vplace, &["cluster", "attributes"]) {
                let cplace = field(&vplace, "cluster");
                variation.cluster = smap.get("cluster").and_then(|c| self.name(c, &cplace));
                if let Some(c) = &variation.cluster {
                    if !is_visible_ascii(c) {
                        self.err(&cplace, "a cluster name must be printable ASCII without spaces (it travels in the route header)");
                    }
                }
                if let Some(attrs) = smap.get("attributes") {
                    let aplace = field(&vplace, "attributes");
                    if let Some(amap) = self.named_map(attrs, &aplace, MAX_ATTRIBUTES) {
                        for (k, val) in amap {
                            let kplace = field(&aplace, k);
                            if self.check_name(k, &kplace) && !is_param_key(k) {
                                self.err(&kplace, "an exposure attribute name must be lower-case letters, digits, \"_\" or \"-\", starting with a letter");
                            }
                            if let Some(s) = self.string(val, &kplace) {
                                if s.len() > MAX_ATTRIBUTE_VALUE_LEN {
                                    self.err(&kplace, format!("the value is {} bytes long; the limit is {MAX_ATTRIBUTE_VALUE_LEN} (it travels in a header on every request this variation serves)", s.len()));
                                } else if !is_printable_ascii(&s) {
                                    self.err(&kplace, "an exposure attribute value must be printable ASCII (it travels in HTTP headers)");
                                }
                                variation.attributes.push((k.to_string(), s));
                            }
                        }
                    }
                }
            }
            out.push(variation);
        }
        out
    }

    fn denied_action(&mut self, v: &Value, place: &str) -> Option<DeniedAction> {
        let map = self.object(v, place, &["serve", "reject"])?;
        match (map.get("serve"), map.get("reject")) {
            (Some(s), None) => self
                .name(s, &field(place, "serve"))
                .map(DeniedAction::Serve),
            (None, Some(r)) => {
                let rplace = field(place, "reject");
                let rmap = self.object(r, &rplace, &["status"])?;
                let splace = field(&rplace, "status");
                let status = match self.required(rmap, "status", &rplace)? {
                    Value::Number(n) => whole(n),
                    other => {
                        self.err(&splace, format!("expected a number, found {}", kind(other)));
                        return None;
                    }
                };
                match status {
                    Some(s @ 400..=599) => Some(DeniedAction::Reject { status: s as u16 }),
                    _ => {
                        self.err(&splace, "must be an HTTP error status from 400 to 599");
                        None
                    }
                }
            }
            _ => {
                self.err(
                    place,
                    "must have exactly one of {\"serve\": VARIATION} or {\"reject\": {\"status\": N}}",
                );
                None
            }
        }
    }

    fn override_entry(&mut self, v: &Value, place: &str) -> Option<Override> {
        let map = self.object(v, place, &["attribute", "values", "serve"])?;
        let attribute = self
            .required(map, "attribute", place)
            .and_then(|a| self.name(a, &field(place, "attribute")));
        let values_place = field(place, "values");
        let values = self
            .required(map, "values", place)
            .and_then(|v| self.values(v, &values_place, true));
        if map
            .get("values")
            .and_then(Value::as_array)
            .is_some_and(<[Value]>::is_empty)
        {
            self.err(&values_place, "needs at least one value");
        }
        let serve = self
            .required(map, "serve", place)
            .and_then(|s| self.name(s, &field(place, "serve")));
        Some(Override {
            place: place.to_string(),
            attribute: attribute?,
            values: values?,
            serve: serve?,
        })
    }

    fn rule(&mut self, v: &Value, place: &str) -> Option<Rule> {
        let map = self.object(v, place, &["name", "when", "serve", "split"])?;
        let name = map
            .get("name")
            .and_then(|n| self.name(n, &field(place, "name")));
        let wplace = field(place, "when");
        let when = match self.required(map, "when", place) {
            Some(w) => self
                .array(w, &wplace, MAX_CONDITIONS)
                .map(|items| {
                    items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, c)| self.condition(c, &index(&wplace, i)))
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let serve = self.serve(map, place);
        Some(Rule {
            place: place.to_string(),
            name,
            when,
            serve,
        })
    }

    fn condition(&mut self, v: &Value, place: &str) -> Option<Condition> {
        match v {
            Value::Object(map) if map.contains_key("segment") => {
                let smap = self.object(v, place, &["segment"])?;
                let name = smap.get("segment")?;
                self.name(name, &field(place, "segment"))
                    .map(|n| Condition::Segment(n, place.to_string()))
            }
            _ => self.clause(v, place).map(Condition::Clause),
        }
    }

    /// `serve` or `split`, exactly one. With both, the split is kept (after the error), so its
    /// variations are still checked.
    fn serve(&mut self, map: &Object, place: &str) -> Option<Serve> {
        match (map.get("serve"), map.get("split")) {
            (Some(s), None) => self.name(s, &field(place, "serve")).map(Serve::Variation),
            (None, Some(split)) => self.split(split, &field(place, "split")).map(Serve::Split),
            (Some(s), Some(split)) => {
                self.err(place, "has both \"serve\" and \"split\"; give exactly one");
                self.name(s, &field(place, "serve"));
                self.split(split, &field(place, "split")).map(Serve::Split)
            }
            (None, None) => {
                self.err(place, "needs \"serve\" or \"split\"");
                None
            }
        }
    }

    /// The entries of a split. Entries with a broken weight are kept with weight 0 (after the
    /// error), so that every variation named is still checked: the policy is refused anyway.
    fn split(&mut self, v: &Value, place: &str) -> Option<Vec<SplitEntry>> {
        let items = self.array(v, place, MAX_SPLIT_ENTRIES)?;
        if items.is_empty() {
            self.err(place, "a split needs at least one entry");
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut total: u64 = 0;
        let mut broken = false;
        for (i, item) in items.iter().enumerate() {
            let eplace = index(place, i);
            let Some(emap) = self.object(item, &eplace, &["variation", "weight"]) else {
                broken = true;
                continue;
            };
            let variation = self
                .required(emap, "variation", &eplace)
                .and_then(|n| self.name(n, &field(&eplace, "variation")));
            let wplace = field(&eplace, "weight");
            let weight = match self.required(emap, "weight", &eplace) {
                Some(Value::Number(n)) => match whole(n) {
                    Some(w) if w <= MAX_WEIGHT => Some(w),
                    _ => {
                        self.err(
                            &wplace,
                            format!("must be a whole number from 0 to {MAX_WEIGHT}"),
                        );
                        None
                    }
                },
                Some(other) => {
                    self.err(&wplace, format!("expected a number, found {}", kind(other)));
                    None
                }
                None => None,
            };
            broken |= variation.is_none() || weight.is_none();
            if let Some(variation) = variation {
                let weight = weight.unwrap_or(0);
                total += weight;
                out.push(SplitEntry {
                    variation,
                    weight,
                    index: i,
                });
            }
        }
        if !broken && total == 0 {
            self.err(
                place,
                "the weights add up to 0; a split needs a positive total",
            );
        }
        Some(out)
    }

    fn settings(&mut self, v: &Value) -> SettingsDoc {
        let mut s = SettingsDoc::default();
        let Some(map) = self.object(
            v,
            "settings",
            &[
                "route_header",
                "exposure_header",
                "version_header",
                "attribute_headers",
                "response_headers",
                "expose_unit_ids",
                "exposure_state",
                "exposure_event",
                "pseudonym_key",
                "fallback_header",
                "upstream_metrics",
            ],
        ) else {
            return s;
        };
        for (key, slot) in [
            ("route_header", &mut s.route_header),
            ("exposure_header", &mut s.exposure_header),
        ] {
            if let Some(h) = map.get(key) {
                let place = field("settings", key);
                if let Some(h) = self.header_name(h, &place) {
                    *slot = h;
                }
            }
        }
        match map.get("version_header") {
            Some(Value::Bool(false)) => s.version_header = None,
            Some(h) => {
                if let Some(h) = self.header_name_or_off(h, "settings.version_header") {
                    s.version_header = Some(h);
                }
            }
            None => {}
        }
        match map.get("attribute_headers") {
            Some(Value::Bool(false)) => s.plain_attribute_headers = false,
            Some(Value::Bool(true)) => self.err(
                "settings.attribute_headers",
                "expected an object of header names, or false for no plain attribute headers, \
                 found true",
            ),
            Some(a) => {
                let amap = self.named_map(a, "settings.attribute_headers", MAX_ATTRIBUTES);
                for (attr, header) in amap.into_iter().flatten() {
                    let place = field("settings.attribute_headers", attr);
                    if let Some(h) = self.header_name(header, &place) {
                        s.attribute_headers.push((attr.to_string(), h));
                    }
                }
            }
            None => {}
        }
        if let Some(b) = map.get("response_headers") {
            s.response_headers = self
                .boolean(b, "settings.response_headers")
                .unwrap_or(false);
        }
        if let Some(b) = map.get("expose_unit_ids") {
            s.expose_unit_ids = self.boolean(b, "settings.expose_unit_ids").unwrap_or(false);
        }
        if let Some(b) = map.get("exposure_state") {
            s.exposure_state = self.boolean(b, "settings.exposure_state").unwrap_or(true);
        }
        if let Some(b) = map.get("exposure_event") {
            s.exposure_event = self.boolean(b, "settings.exposure_event").unwrap_or(true);
        }
        if let Some(k) = map.get("pseudonym_key") {
            if let Some(text) = self.string(k, "settings.pseudonym_key") {
                s.pseudonym_key = parse_key(&text);
                if s.pseudonym_key.is_none() {
                    self.err(
                        "settings.pseudonym_key",
                        "must be 32 hexadecimal digits (a 128-bit key, e.g. from `openssl rand -hex 16`)",
                    );
                }
            }
        }
        if let Some(h) = map.get("fallback_header") {
            s.fallback_header = self.header_name(h, "settings.fallback_header");
        }
        if let Some(b) = map.get("upstream_metrics") {
            s.upstream_metrics = self.boolean(b, "settings.upstream_metrics").unwrap_or(true);
        }
        self.distinct_set_headers(&s, map);
        s
    }

    /// Each header switchyard sets has its own name: one that doubled as another would be
    /// written twice, and the second write would overwrite (or join) the first, e.g. the
    /// exposure value landing in the route header.
    fn distinct_set_headers(&mut self, s: &SettingsDoc, given: &Object) {
        // (place, name, written by the author rather than a default)
        let fixed = s
            .fixed_headers()
            .map(|(key, h)| (field("settings", key), h, given.contains_key(key)));
        let attributes = s
            .attribute_headers
            .iter()
            .map(|(attr, h)| (field("settings.attribute_headers", attr), h, true));
        let mut seen: Vec<(String, &String, bool)> = Vec::new();
        for (place, h, written) in fixed.chain(attributes) {
            if CLIENT_HEADERS.contains(&h.as_str()) {
                self.err(
                    &place,
                    format!("{} is a request header clients send and the request relies on; switchyard removes client copies of the headers it sets, so pick another name", quoted(h)),
                );
            }
            let Some((first, _, first_written)) = seen.iter().find(|(_, earlier, _)| *earlier == h)
            else {
                seen.push((place, h, written));
                continue;
            };
            let default = |place: &str, written: bool| {
                if written {
                    place.to_string()
                } else {
                    format!("{place} (its default)")
                }
            };
            // Two defaults never collide: blame the name the author wrote.
            let (at, other) = if written {
                (place, default(first, *first_written))
            } else {
                (first.clone(), default(&place, false))
            };
            self.err(
                &at,
                format!(
                    "{} is also {other}; each header switchyard sets needs its own name",
                    quoted(h)
                ),
            );
        }
    }

    /// A request header the policy reads, lower-cased. Pseudo-headers are refused: the filter
    /// reads `:path`, `:authority` and `:method` only as the built-in attributes, so a header
    /// attribute named after one would be set in `switchyard eval` and never in the filter.
    fn request_header(&mut self, v: &Value, place: &str) -> Option<String> {
        let h = self.name(v, place)?.to_ascii_lowercase();
        if h.starts_with(':') {
            self.err(
                place,
                format!("{} is a pseudo-header; read the built-in attributes path, host and method instead", quoted(&h)),
            );
            return None;
        }
        // Envoy's HTTP/1 codec turns Host into `:authority` (HTTP/2 and 3 send `:authority`),
        // so the filter never sees a `host` header that `switchyard eval` would read.
        if h == "host" {
            self.err(
                place,
                "Envoy carries the Host header as the pseudo-header :authority, so no request \
                 reaches the filter with a \"host\" header; read the built-in attribute host \
                 instead",
            );
            return None;
        }
        // No request carries a header whose name is not an RFC 9110 token (Envoy refuses
        // one), so an attribute reading it would silently never be set.
        if !h.bytes().all(is_token_byte) {
            self.err(
                place,
                format!("{} is not a valid header name (RFC 9110 token characters: letters, digits and !#$%&'*+-.^_`|~)", quoted(&h)),
            );
            return None;
        }
        Some(h)
    }

    /// A header name switchyard may set: lower-case token characters, not a pseudo-header.
    /// A header switchyard may be told not to set: `false` is read by the caller, so `true` is
    /// the one value to explain here.
    fn header_name_or_off(&mut self, v: &Value, place: &str) -> Option<String> {
        if *v == Value::Bool(true) {
            self.err(
                place,
                "expected a header name, or false for no such header, found true",
            );
            return None;
        }
        self.header_name(v, place)
    }

    fn header_name(&mut self, v: &Value, place: &str) -> Option<String> {
        let h = self.name(v, place)?;
        let ok = h
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            self.err(
                place,
                format!(
                    "{} is not a valid header name (lower-case letters, digits, \"-\", \"_\")",
                    quoted(&h)
                ),
            );
            return None;
        }
        Some(h)
    }
}

/// Request headers a header switchyard sets must not be named after: switchyard removes every
/// client copy of its own headers, so the request would lose its host, cookies, credentials,
/// framing or the ids its exposure event carries.
const CLIENT_HEADERS: [&str; 13] = [
    "host",
    "cookie",
    "authorization",
    "proxy-authorization",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "x-request-id",
    "traceparent",
];

/// A name [`Reader::check_name`] accepts.
fn name_fits(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN
}

fn consent_state(s: &str) -> Option<ConsentState> {
    match s {
        "opt_in" => Some(ConsentState::OptIn),
        "opt_out" => Some(ConsentState::OptOut),
        "unset" => Some(ConsentState::Unset),
        _ => None,
    }
}

/// A tenant's consent state per class (indexed like `classes`) when the tenant's name and
/// every record are well formed and every record's class is defined, read without building a
/// place or a record; `None` for anything [`Reader::consent`] or the compiler would report,
/// which then read the records again to say where. A consent table may hold tens of thousands
/// of records, and building their places (`consent.tenants.acme.support_copilot.actor`, five
/// per record) was the largest part of reading such a policy: every worker does it on each
/// consent change, while its requests wait.
fn well_formed_records(
    tenant: &str,
    records: &Value,
    classes: &[(String, ConsentMode)],
) -> Option<Box<[ConsentState]>> {
    let Value::Object(records) = records else {
        return None;
    };
    if !name_fits(tenant) || records.len() > MAX_CONSENT_CLASSES {
        return None;
    }
    let mut states = vec![ConsentState::Unset; classes.len()].into_boxed_slice();
    for (class, record) in records {
        let Value::Object(fields) = record else {
            return None;
        };
        let (mut state, mut actor, mut at) = (None, false, false);
        for (key, value) in fields {
            match (key, value.as_str()) {
                ("state", Some(s)) => state = consent_state(s),
                ("actor", Some(s)) => actor = !s.trim().is_empty(),
                ("at", Some(s)) => at = is_rfc3339(s),
                _ => return None,
            }
        }
        // A few classes at most: a scan, not an index.
        let index = classes.iter().position(|(name, _)| name == class)?;
        *states.get_mut(index)? = state.filter(|_| actor && at)?;
    }
    Some(states)
}

/// A non-negative whole number, written `5` or `5.0`: JSON does not tell them apart, nor does
/// JSON Schema's `integer` (schema/policy.schema.json), and a generator may print either.
fn whole(n: &serde_json::Number) -> Option<u64> {
    // Beyond 2^53 a float is not exact; every limit here is far below it.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    n.as_u64().or_else(|| {
        let f = n.as_f64()?;
        (f.fract() == 0.0 && (0.0..=EXACT).contains(&f)).then_some(f as u64)
    })
}

/// A character of an RFC 9110 token (a header field name).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Printable ASCII without spaces (an HTTP path or authority).
fn is_visible_ascii(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())
}

/// A 128-bit key written as 32 hexadecimal digits.
pub fn parse_key(text: &str) -> Option<[u8; 16]> {
    let bytes = text.trim().as_bytes();
    // `from_str_radix` alone would also take a sign ("+f"), so check the digits first.
    if bytes.len() != 32 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        key[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(key)
}

/// An RFC 8941 parameter key, which exposure attribute names become.
fn is_param_key(k: &str) -> bool {
    let mut bytes = k.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub fn is_printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, checked by shape and ranges.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let num = |r: std::ops::Range<usize>| -> u32 {
        b.get(r)
            .map(|d| d.iter().fold(0u32, |acc, x| acc * 10 + u32::from(x - b'0')))
            .unwrap_or(0)
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't' | b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let (year, month) = (num(0..4), num(5..7));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    // RFC 3339 5.7: the day must exist in its month (no 2026-02-30, no 2025-02-29).
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&month)
        || !(1..=days).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
                && (u32::from(h1 - b'0') * 10 + u32::from(h2 - b'0')) <= 23
                && (u32::from(m1 - b'0') * 10 + u32::from(m2 - b'0')) <= 59
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_shapes() {
        for ok in [
            "2026-05-12T09:00:00Z",
            "2026-05-12T09:00:00.123Z",
            "2026-05-12t09:00:00+02:00",
            "2026-12-31T23:59:60-11:30",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2026-05-12",
            "2026-13-12T09:00:00Z",
            "2026-05-12T25:00:00Z",
            "2026-05-12T09:00:00",
            "2026-05-12T09:00:00.Z",
            "2026-05-12T09:00:00+2:00",
            "yesterday",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// The fast path for consent records accepts exactly what the reporting path reads
        /// without a problem, with the same records. Records are drawn near the valid one
        /// (each field valid, wrong or missing), so both paths are taken often.
        #[test]
        fn well_formed_records_agree_with_the_reporting_path(
            tenant in proptest::sample::select(vec!["acme", "acme", "", "t ü"]),
            records in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["c1", "c2", ""]),
                    proptest::sample::select(vec!["\"opt_in\"", "\"opt_out\"", "\"unset\"", "\"on\"", "1", ""]),
                    proptest::sample::select(vec!["\"admin\"", "\"admin\"", "\" \"", "null", ""]),
                    proptest::sample::select(vec![
                        "\"2026-05-12T09:00:00Z\"", "\"2026-05-12T09:00:00Z\"",
                        "\"2026-02-30T09:00:00Z\"", "[]", "",
                    ]),
                    proptest::sample::select(vec!["", "", "", "\"mode\": 1"]),
                ),
                0..3,
            ),
            as_list in proptest::bool::weighted(0.1),
        ) {
            let body = |(state, actor, at, extra): &(&str, &str, &str, &str)| {
                let members: Vec<String> = [("state", state), ("actor", actor), ("at", at)]
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| format!("\"{k}\": {v}"))
                    .chain((!extra.is_empty()).then(|| extra.to_string()))
                    .collect();
                format!("{{{}}}", members.join(", "))
            };
            let text = if as_list {
                let items: Vec<String> =
                    records.iter().map(|(_, a, b, c, d)| body(&(*a, *b, *c, *d))).collect();
                format!("[{}]", items.join(", "))
            } else {
                let members: Vec<String> = records
                    .iter()
                    .map(|(class, a, b, c, d)| format!("\"{class}\": {}", body(&(*a, *b, *c, *d))))
                    .collect();
                format!("{{{}}}", members.join(", "))
            };
            let arena = bumpalo::Bump::new();
            let (value, repeats) = crate::repeated_keys::parse(&text, &arena).unwrap();
            proptest::prop_assume!(repeats.places.is_empty());
            let mut reader = Reader { errors: PolicyErrors::default() };
            let reported = reader.tenant_records(tenant, &value);
            // Defined classes: c1 and c2 (`""` is not, which only the compiler reports).
            let classes = [("c2", ConsentMode::OptIn), ("c1", ConsentMode::OptOut)]
                .map(|(name, mode)| (name.to_string(), mode));
            let fast = well_formed_records(tenant, &value, &classes);
            // What the compiler makes of the reported records: the state per class, or
            // nothing when a class is not defined (which it reports).
            let resolved = reported.filter(|_| reader.errors.is_empty()).and_then(|records| {
                let mut states = vec![ConsentState::Unset; classes.len()];
                for record in records {
                    let index = classes.iter().position(|(name, _)| *name == record.class)?;
                    states[index] = record.state;
                }
                Some(states.into_boxed_slice())
            });
            proptest::prop_assert_eq!(fast, resolved, "{}: {:?}", text, reader.errors);
        }
    }

    #[test]
    fn places_quote_odd_keys() {
        assert_eq!(field("", "flags"), "flags");
        assert_eq!(field("context", "tenant"), "context.tenant");
        assert_eq!(field("consent.tenants", "a b"), "consent.tenants[\"a b\"]");
    }
}
