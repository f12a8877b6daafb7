//! Remote policy sources: the bootstrap policy (the plugin configuration) may name where newer
//! versions of itself (`source`) and the consent records (`consent_source`) are served over
//! HTTP. The filter polls them, checks each new document whole with the engine, and swaps the
//! live policy atomically (streams already running keep the policy they started with).
//!
//! ## One fetch per interval, for every worker
//!
//! Envoy runs one copy of the filter (one Wasm VM, one root context) per worker thread. They
//! share Envoy's *shared data* (a key-value store per `vm_id` with compare-and-swap), and use
//! it two ways, per source (`<id>` is `<cluster>:<authority><path>`):
//!
//! - **Lease** `switchyard.lease.<policy|consent>.<id>`: the time (ms since the epoch) until
//!   which someone holds the fetch. On every tick a worker reads it; once it has expired, the
//!   worker writes `now + interval_ms` with the CAS value it read. Only one write with that CAS
//!   value succeeds, so exactly one worker fetches per interval.
//! - **Document** `switchyard.<policy|consent>.<id>`: the last good document as fetched,
//!   `switchyard/1\n<etag>\n<fetched at, ms>\n<body>`. Only the fetcher writes it, and only
//!   after the engine accepted the document. Every worker compares its CAS value on each tick
//!   and, when it changed, recompiles and swaps. The fetcher sends the stored ETag as
//!   `If-None-Match`, so an unchanged document costs a `304`.
//!
//! The tick period is a quarter of the shortest interval (50 ms to 1 s), so a change reaches
//! every worker within about `interval_ms × 1.5` of being served (one interval plus a tick to
//! fetch it, a tick for the other workers to read it).
//!
//! ## What is compiled
//!
//! The live policy is the last good fetched policy (the bootstrap until one is fetched) with,
//! when a consent document has been fetched, its `consent.tenants` replaced by the consent
//! document's `tenants` (JSON level), compiled whole with the node's [`LoadOptions`] (so a
//! fetched policy for another environment is refused like a bootstrap one). The sources stay
//! the bootstrap's: a fetched policy's own `source`/`consent_source` are validated but not
//! followed (a warning says so when they differ).
//!
//! ## Failures
//!
//! A failed fetch (no connection, reset, timeout), a status other than 200 and 304, a body that
//! is not UTF-8, or a document the engine refuses keeps the last good policy: the fetcher logs
//! why at warning level and counts `switchyard.policy.fetch_failures`. Every swap logs one info
//! line (by the worker that fetched the document; the others adopt it at debug level):
//! `switchyard: policy swap: <old version> -> <new version>, hash <content hash>, <changes>`
//! and counts `switchyard.policy.swaps`. The gauge `switchyard.policy.age_seconds` is the time
//! since the live policy was loaded, updated on every tick.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MetricType, Status};
use serde_json::Value;
use switchyard_policy::{
    content_hash, read_json_unique, summarize_change, CompiledPolicy, LoadOptions, RemoteSource,
};

use crate::{abi, headers, log, warn};

pub const FETCH_FAILURES: &str = "switchyard.policy.fetch_failures";
pub const SWAPS: &str = "switchyard.policy.swaps";
pub const AGE_SECONDS: &str = "switchyard.policy.age_seconds";

/// `proxy_wasm::types::MapType::HttpCallResponseHeaders`.
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
/// First line of a shared document.
const SHARED_FORMAT: &str = "switchyard/1";
/// How long past its timeout a fetch may stay unanswered before it is given up.
const LOST_FETCH_GRACE_MS: u64 = 5_000;
/// At most this many of a refused document's errors are logged.
const MAX_LOGGED_ERRORS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Policy,
    Consent,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Policy => "policy",
            Kind::Consent => "consent",
        }
    }
}

/// A document as stored in shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shared {
    etag: String,
    fetched_at_ms: u64,
    body: String,
}

impl Shared {
    fn encode(&self) -> Vec<u8> {
        format!(
            "{SHARED_FORMAT}\n{}\n{}\n{}",
            self.etag, self.fetched_at_ms, self.body
        )
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Shared> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(4, '\n');
        if parts.next()? != SHARED_FORMAT {
            return None;
        }
        let etag = parts.next()?.to_string();
        let fetched_at_ms = parts.next()?.parse().ok()?;
        let body = parts.next()?.to_string();
        Some(Shared {
            etag,
            fetched_at_ms,
            body,
        })
    }
}

struct InFlight {
    token: u32,
    started_ms: u64,
}

/// One polled source.
struct Feed {
    kind: Kind,
    source: RemoteSource,
    doc_key: String,
    lease_key: String,
    /// CAS value of the shared document when this worker last read it.
    seen_cas: Option<u32>,
    /// The last good document, if one was fetched (by any worker).
    current: Option<Shared>,
    in_flight: Option<InFlight>,
}

impl Feed {
    fn new(kind: Kind, source: &RemoteSource) -> Feed {
        let id = format!("{}:{}{}", source.cluster, source.authority, source.path);
        let feed = Feed {
            kind,
            source: source.clone(),
            doc_key: format!("switchyard.{}.{id}", kind.name()),
            lease_key: format!("switchyard.lease.{}.{id}", kind.name()),
            seen_cas: None,
            current: None,
            in_flight: None,
        };
        // Create the lease (expired) so that taking it is always a compare-and-swap: Envoy
        // lets any write create a key, CAS value or not.
        if let Ok((None, _)) = hostcalls::get_shared_data(&feed.lease_key) {
            let _ = hostcalls::set_shared_data(&feed.lease_key, Some(b"0"), None);
        }
        feed
    }

    fn describe(&self) -> String {
        format!(
            "{} source {}{} (cluster {})",
            self.kind.name(),
            self.source.authority,
            self.source.path,
            self.source.cluster
        )
    }

    /// Reads the shared document; true when it differs from the one this worker uses.
    fn refresh(&mut self) -> bool {
        let (bytes, cas) = match hostcalls::get_shared_data(&self.doc_key) {
            Ok(found) => found,
            Err(status) => {
                warn(&format!(
                    "switchyard: cannot read shared data {} ({status:?})",
                    self.doc_key
                ));
                return false;
            }
        };
        let Some(bytes) = bytes else {
            return false;
        };
        if cas.is_some() && cas == self.seen_cas {
            return false;
        }
        self.seen_cas = cas;
        let Some(shared) = Shared::decode(&bytes) else {
            warn(&format!(
                "switchyard: shared data {} is not a switchyard document; ignoring it",
                self.doc_key
            ));
            return false;
        };
        let changed = self.current.as_ref().map(|c| &c.body) != Some(&shared.body);
        self.current = Some(shared);
        changed
    }

    /// Takes the lease if it has expired; true if this worker now holds it.
    fn take_lease(&mut self, now_ms: u64) -> bool {
        let (value, cas) = match hostcalls::get_shared_data(&self.lease_key) {
            Ok(found) => found,
            Err(_) => return false,
        };
        let (Some(value), Some(cas)) = (value, cas) else {
            // Gone (or never created): create it expired; contest it on the next tick.
            let _ = hostcalls::set_shared_data(&self.lease_key, Some(b"0"), None);
            return false;
        };
        let expiry: u64 = std::str::from_utf8(&value)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if now_ms < expiry {
            return false;
        }
        let until = now_ms + u64::from(self.source.interval_ms);
        hostcalls::set_shared_data(
            &self.lease_key,
            Some(until.to_string().as_bytes()),
            Some(cas),
        )
        .is_ok()
    }

    /// Publishes a good document for every worker; returns the CAS value it got.
    fn publish(&mut self, shared: Shared) {
        if let Err(status) = hostcalls::set_shared_data(&self.doc_key, Some(&shared.encode()), None)
        {
            warn(&format!(
                "switchyard: cannot write shared data {} ({status:?}); other workers keep their policy until the next fetch",
                self.doc_key
            ));
        }
        self.seen_cas = hostcalls::get_shared_data(&self.doc_key)
            .ok()
            .and_then(|(_, cas)| cas);
        self.current = Some(shared);
    }
}

/// What a fetch brought back.
enum Fetched {
    NotModified,
    Document { etag: String, body: String },
}

/// The remote sources of one root context.
pub struct Remote {
    /// The tick period polling needs (the root context sets it: [`Remote::tick_ms`]).
    tick_ms: u64,
    bootstrap: String,
    bootstrap_sources: (Option<RemoteSource>, Option<RemoteSource>),
    options: LoadOptions,
    feeds: Vec<Feed>,
    /// Content hash of the text the live policy was compiled from.
    live_hash: String,
    loaded_at_ms: u64,
    failures: Option<u32>,
    swaps: Option<u32>,
    age: Option<u32>,
}

impl Remote {
    /// Starts polling if the bootstrap policy names a source (`None` if it names none).
    pub fn start(bootstrap: &str, policy: &CompiledPolicy, options: LoadOptions) -> Option<Remote> {
        let mut feeds = Vec::new();
        if let Some(source) = policy.source() {
            feeds.push(Feed::new(Kind::Policy, source));
        }
        if let Some(source) = policy.consent_source() {
            feeds.push(Feed::new(Kind::Consent, source));
        }
        let shortest = feeds.iter().map(|f| f.source.interval_ms).min()?;
        for feed in &feeds {
            log(
                LogLevel::Info,
                &format!(
                    "switchyard: polling {} every {} ms (timeout {} ms)",
                    feed.describe(),
                    feed.source.interval_ms,
                    feed.source.timeout_ms
                ),
            );
        }
        let (source, consent_source) = policy.sources();
        Some(Remote {
            tick_ms: u64::from((shortest / 4).clamp(50, 1_000)),
            bootstrap: bootstrap.to_string(),
            bootstrap_sources: (source.cloned(), consent_source.cloned()),
            options,
            feeds,
            live_hash: content_hash(bootstrap),
            loaded_at_ms: now_ms(),
            failures: crate::metrics::define(MetricType::Counter, FETCH_FAILURES),
            swaps: crate::metrics::define(MetricType::Counter, SWAPS),
            age: crate::metrics::define(MetricType::Gauge, AGE_SECONDS),
        })
    }

    /// The tick period polling needs: a quarter of the shortest interval, 50 ms to 1 s.
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// Every tick: adopt what another worker fetched, fetch if this worker wins the lease,
    /// update the age gauge. Returns a policy to install, if one changed.
    pub fn on_tick(&mut self, live: Option<&CompiledPolicy>) -> Option<CompiledPolicy> {
        let now = now_ms();
        let mut changed = false;
        for feed in &mut self.feeds {
            changed |= feed.refresh();
        }
        let swap = if changed { self.adopt(live, now) } else { None };
        for i in 0..self.feeds.len() {
            self.maybe_fetch(i, now, live);
        }
        self.record_age(now);
        swap
    }

    /// An HTTP call came back (or failed). Returns a policy to install, if it brought one.
    pub fn on_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        live: Option<&CompiledPolicy>,
    ) -> Option<CompiledPolicy> {
        let index = self
            .feeds
            .iter()
            .position(|f| f.in_flight.as_ref().is_some_and(|c| c.token == token))?;
        self.feeds[index].in_flight = None;
        let now = now_ms();
        let fetched = match read_response(num_headers, body_size) {
            Ok(fetched) => fetched,
            Err(why) => {
                self.fail(index, live, &why);
                return None;
            }
        };
        let Fetched::Document { etag, body } = fetched else {
            log(
                LogLevel::Debug,
                &format!("switchyard: {} not modified", self.feeds[index].describe()),
            );
            return None;
        };
        let shared = Shared {
            etag,
            fetched_at_ms: now,
            body,
        };
        let feed = &self.feeds[index];
        if feed.current.as_ref().map(|c| &c.body) == Some(&shared.body) {
            // Unchanged (a server that ignores If-None-Match); keep its new ETag if it has one.
            if feed.current.as_ref().map(|c| &c.etag) != Some(&shared.etag) {
                self.feeds[index].publish(shared);
            }
            return None;
        }
        let kind = feed.kind;
        let text = match self.effective(Some((kind, &shared.body))) {
            Ok(text) => text,
            Err(why) => {
                self.fail(index, live, &why);
                return None;
            }
        };
        let policy = match switchyard_policy::load_with(&text, &self.options) {
            Ok(policy) => policy,
            Err(errors) => {
                let mut why = format!(
                    "the {} document was refused ({} problem{})",
                    kind.name(),
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                for error in errors.iter().take(MAX_LOGGED_ERRORS) {
                    why.push_str("; ");
                    why.push_str(&error.to_string());
                }
                if errors.len() > MAX_LOGGED_ERRORS {
                    why.push_str("; ...");
                }
                self.fail(index, live, &why);
                return None;
            }
        };
        self.feeds[index].publish(shared);
        self.install(live, policy, &text, now, true)
    }

    /// A worker's own view changed through shared data: recompile and swap.
    fn adopt(&mut self, live: Option<&CompiledPolicy>, now: u64) -> Option<CompiledPolicy> {
        let text = match self.effective(None) {
            Ok(text) => text,
            Err(why) => {
                log(
                    LogLevel::Error,
                    &format!("switchyard: shared policy not adopted: {why}"),
                );
                return None;
            }
        };
        match switchyard_policy::load_with(&text, &self.options) {
            Ok(policy) => self.install(live, policy, &text, now, false),
            Err(errors) => {
                log(
                    LogLevel::Error,
                    &format!(
                        "switchyard: shared policy not adopted: {}",
                        errors
                            .iter()
                            .next()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    ),
                );
                None
            }
        }
    }

    fn install(
        &mut self,
        live: Option<&CompiledPolicy>,
        policy: CompiledPolicy,
        text: &str,
        now: u64,
        fetched_here: bool,
    ) -> Option<CompiledPolicy> {
        let hash = content_hash(text);
        if hash == self.live_hash {
            return None;
        }
        let old = live.map_or("none", CompiledPolicy::version);
        let line = format!(
            "switchyard: policy swap: {old} -> {}, hash {hash}, {}",
            policy.version(),
            summarize_change(live, &policy)
        );
        if fetched_here {
            log(LogLevel::Info, &line);
            crate::metrics::increment(self.swaps);
            let (source, consent_source) = policy.sources();
            if (source.cloned(), consent_source.cloned()) != self.bootstrap_sources {
                warn(&format!(
                    "switchyard: policy {} names other sources than the bootstrap policy; the bootstrap's stay in effect",
                    policy.version()
                ));
            }
        } else {
            log(
                LogLevel::Debug,
                &format!("{line} (fetched by another worker)"),
            );
        }
        self.live_hash = hash;
        self.loaded_at_ms = now;
        self.record_age(now);
        Some(policy)
    }

    fn fail(&self, index: usize, live: Option<&CompiledPolicy>, why: &str) {
        warn(&format!(
            "switchyard: fetch of {} failed: {why}; keeping policy {}",
            self.feeds[index].describe(),
            live.map_or("none", CompiledPolicy::version)
        ));
        crate::metrics::increment(self.failures);
    }

    fn maybe_fetch(&mut self, index: usize, now: u64, live: Option<&CompiledPolicy>) {
        let feed = &mut self.feeds[index];
        if let Some(call) = &feed.in_flight {
            let deadline =
                call.started_ms + u64::from(feed.source.timeout_ms) + LOST_FETCH_GRACE_MS;
            if now < deadline {
                return;
            }
            // Envoy answers every call (a timeout is a 504); never waiting forever is cheap.
            feed.in_flight = None;
        }
        if !feed.take_lease(now) {
            return;
        }
        let mut request: Vec<(&str, &str)> = vec![
            (":method", "GET"),
            (":path", &feed.source.path),
            (":authority", &feed.source.authority),
            ("accept", "application/json"),
            ("user-agent", "switchyard"),
        ];
        let etag = feed
            .current
            .as_ref()
            .map(|c| c.etag.clone())
            .unwrap_or_default();
        if !etag.is_empty() {
            request.push(("if-none-match", &etag));
        }
        let timeout = Duration::from_millis(u64::from(feed.source.timeout_ms));
        match hostcalls::dispatch_http_call(&feed.source.cluster, request, None, vec![], timeout) {
            Ok(token) => {
                feed.in_flight = Some(InFlight {
                    token,
                    started_ms: now,
                });
            }
            Err(status) => {
                let why = match status {
                    Status::BadArgument => format!(
                        "the call could not be made (BadArgument: is there a cluster named \"{}\"?)",
                        feed.source.cluster
                    ),
                    other => format!("the call could not be made ({other:?})"),
                };
                self.fail(index, live, &why);
            }
        }
    }

    /// The text to compile: the policy (fetched, else bootstrap) with the consent document's
    /// tenants, if one was fetched; `replace` stands in for one feed's current document.
    fn effective(&self, replace: Option<(Kind, &str)>) -> Result<String, String> {
        let body = |kind: Kind| -> Option<&str> {
            match replace {
                Some((k, text)) if k == kind => Some(text),
                _ => self
                    .feeds
                    .iter()
                    .find(|f| f.kind == kind)
                    .and_then(|f| f.current.as_ref())
                    .map(|c| c.body.as_str()),
            }
        };
        let policy = body(Kind::Policy).unwrap_or(&self.bootstrap);
        match body(Kind::Consent) {
            None => Ok(policy.to_string()),
            Some(consent) => merge_consent(policy, consent),
        }
    }

    fn record_age(&self, now: u64) {
        if let Some(id) = self.age {
            let _ = hostcalls::record_metric(id, now.saturating_sub(self.loaded_at_ms) / 1_000);
        }
    }
}

/// The policy with `consent.tenants` replaced by the consent document's `tenants`.
pub fn merge_consent(policy: &str, consent: &str) -> Result<String, String> {
    // Read strictly: a repeated key would otherwise vanish here, before the policy's own
    // check could refuse it (a second, empty record for a tenant would undo an opt-out).
    let mut doc = read_json_unique(policy.strip_prefix('\u{feff}').unwrap_or(policy))
        .map_err(|e| format!("the policy {e}"))?;
    let consent = read_json_unique(consent.strip_prefix('\u{feff}').unwrap_or(consent))
        .map_err(|e| format!("the consent document {e}"))?;
    let Value::Object(mut records) = consent else {
        return Err("the consent document must be an object {\"tenants\": {...}}".to_string());
    };
    if let Some(unknown) = records.keys().find(|k| *k != "tenants") {
        return Err(format!(
            "the consent document has an unknown field \"{unknown}\" (expected: tenants)"
        ));
    }
    let tenants = records
        .remove("tenants")
        .ok_or_else(|| "the consent document has no \"tenants\"".to_string())?;
    match doc.get_mut("consent") {
        Some(Value::Object(section)) => {
            section.insert("tenants".to_string(), tenants);
        }
        _ => {
            return Err(
                "the policy has no consent section to take the fetched consent records".to_string(),
            )
        }
    }
    serde_json::to_string(&doc).map_err(|e| format!("cannot serialize the merged policy: {e}"))
}

fn read_response(num_headers: usize, body_size: usize) -> Result<Fetched, String> {
    if num_headers == 0 {
        return Err("no response (connection failure, reset or timeout)".to_string());
    }
    // Raw bytes: the SDK's header reader panics on a non-UTF-8 value (see `abi`).
    let bytes = abi::get_header_map_bytes(HTTP_CALL_RESPONSE_HEADERS)
        .map_err(|status| format!("cannot read the response headers (status {})", status.0))?;
    let response = headers::parse_map(&bytes);
    let status = headers::find(&response, ":status").unwrap_or("");
    match status {
        "304" => return Ok(Fetched::NotModified),
        "200" => {}
        "" => return Err("the response has no status".to_string()),
        other => return Err(format!("status {other}")),
    }
    let etag = headers::find(&response, "etag")
        .unwrap_or("")
        .trim()
        .to_string();
    // An ETag is a header value: it cannot hold a line break, but be sure (shared format).
    let etag = if etag.contains('\n') {
        String::new()
    } else {
        etag
    };
    let body = match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size) {
        Ok(body) => body.unwrap_or_default(),
        Err(status) => return Err(format!("cannot read the response body ({status:?})")),
    };
    let body = String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    Ok(Fetched::Document { etag, body })
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_documents_round_trip() {
        let doc = Shared {
            etag: "\"v2\"".into(),
            fetched_at_ms: 1234,
            body: "{\n\"a\": 1}\n".into(),
        };
        assert_eq!(Shared::decode(&doc.encode()), Some(doc));
        assert_eq!(Shared::decode(b"other\n\n1\n{}"), None);
    }

    #[test]
    fn consent_replaces_tenants() {
        let policy = r#"{"version": "1", "consent": {"tenant_attribute": "t", "classes": {}, "tenants": {"a": {}}}, "flags": []}"#;
        let merged = merge_consent(policy, r#"{"tenants": {"b": {}}}"#).unwrap_or_default();
        let v: Value = serde_json::from_str(&merged).unwrap_or(Value::Null);
        assert_eq!(v["consent"]["tenants"], serde_json::json!({"b": {}}));
        assert_eq!(v["version"], "1");
        assert!(merge_consent(policy, r#"{"tenants": {}, "x": 1}"#).is_err());
        assert!(merge_consent(policy, "[]").is_err());
        let repeated = r#"{"tenants": {"b": {"c": {"state": "opt_out"}}, "b": {}}}"#;
        assert_eq!(
            merge_consent(policy, repeated).err().as_deref(),
            Some("the consent document repeats a key within an object at tenants.b; the copies would silently replace each other")
        );
        let repeated_policy = policy.replacen('{', r#"{"version": "0", "#, 1);
        assert!(merge_consent(&repeated_policy, r#"{"tenants": {}}"#)
            .is_err_and(|e| e.starts_with("the policy repeats a key within an object at version")));
        assert!(merge_consent(r#"{"version": "1", "flags": []}"#, r#"{"tenants": {}}"#).is_err());
    }
}
