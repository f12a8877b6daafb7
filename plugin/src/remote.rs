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
//! - **Latest fetch** `switchyard.<policy|consent>.<id>`: the source's latest document as
//!   fetched, `switchyard/1\n<etag>\n<fetched at, ms>\n<body>`, whether or not it was applied,
//!   so that a document waiting for its partner can be paired when the partner arrives; empty
//!   once the source serves the live document again.
//! - **Live pair** `switchyard.live.<policy id or ->|<consent id or ->`: the policy document
//!   and the consent document every worker serves, in one value so that they change together
//!   (`switchyard-live/1 <length> <length>\n` and the two documents). Only the fetcher writes
//!   it, only after the engine accepted the pair, and only with the CAS value it read it with:
//!   two workers deciding at once cannot publish two different pairs, the second re-reads and
//!   decides again. Every worker compares its CAS value on each tick and, when it changed,
//!   recompiles and swaps. The fetcher sends the live document's ETag as `If-None-Match`, so an
//!   unchanged document costs a `304`; after a refusal, the refused (latest) document's, so a
//!   server that still serves it answers `304` too and the refusal is counted again.
//!
//! A fetched document is tried first with the other source's latest fetch, if that one is
//! waiting (a policy that renames a consent class and the records moved to the new name arrive
//! one after the other: each alone is refused against the other's live document), then with the
//! other's live document. A configuration (the bootstrap, perhaps pushed by ECDS) given while
//! a live pair exists serves that pair at once, or is refused when it cannot take it (a
//! bootstrap without a consent class the fetched records name).
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
//! A failed fetch (no connection, reset, timeout), a status other than 200 and 304, a body
//! over the engine's document limit (refused before it is read), a body that is not UTF-8, or
//! a document the engine refuses keeps the last good policy: the fetcher logs
//! why at warning level and counts `switchyard.policy.fetch_failures`. A pair of documents
//! refused once is refused again by its content hash without a second check. Every swap logs one info
//! line (by the worker that fetched the document; the others adopt it at debug level):
//! `switchyard: policy swap: <old version> -> <new version>, hash <content hash>, <changes>`
//! and counts `switchyard.policy.swaps`. The gauge `switchyard.policy.age_seconds` is the time
//! since the live policy was loaded, updated on every tick.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MetricType, Status};
use switchyard_policy::limits::MAX_DOCUMENT_BYTES;
use switchyard_policy::{
    content_hash, summarize_change, Awaiting, CompiledPolicy, LoadOptions, RemoteSource,
    UntilFetched,
};

use crate::consent_merge::Splice;
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
/// First line of the shared live pair.
const LIVE_FORMAT: &str = "switchyard-live/1";
/// How often a fetcher re-decides when other workers publish while it checks its document.
const MAX_PUBLISH_ATTEMPTS: usize = 3;
/// How many refused pairs a worker remembers (a fetch tries at most two).
const REMEMBERED_REFUSALS: usize = 4;

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
    /// The refused document whose ETag the call carries, if it asks about one: a `304` then
    /// means the server still serves it, not the live one.
    asked_about: Option<Shared>,
}

/// One polled source.
struct Feed {
    kind: Kind,
    source: RemoteSource,
    /// Shared key of the latest document fetched from this source, applied or not, so that a
    /// document waiting for its partner (a policy and the consent records that go with it) can
    /// be paired when the partner arrives, whichever worker fetches it.
    pending_key: String,
    lease_key: String,
    /// This source's document in the live pair, if one was fetched (by any worker).
    current: Option<Shared>,
    in_flight: Option<InFlight>,
}

impl Feed {
    fn new(kind: Kind, source: &RemoteSource) -> Feed {
        let feed = Feed {
            kind,
            source: source.clone(),
            pending_key: format!("switchyard.{}.{}", kind.name(), source_id(source)),
            lease_key: format!("switchyard.lease.{}.{}", kind.name(), source_id(source)),
            current: None,
            in_flight: None,
        };
        // Create the lease (expired) so that taking it is always a compare-and-swap: Envoy
        // lets any write create a key, CAS value or not.
        create_if_absent(&feed.lease_key, b"0");
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

    /// Takes the lease if it has expired; true if this worker now holds it.
    fn take_lease(&mut self, now_ms: u64) -> bool {
        let (value, cas) = match hostcalls::get_shared_data(&self.lease_key) {
            Ok(found) => found,
            Err(_) => return false,
        };
        let (Some(value), Some(cas)) = (value, cas) else {
            // Gone (or never created): create it expired; contest it on the next tick.
            create_if_absent(&self.lease_key, b"0");
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

    /// Records what the source serves now: a new document (`Some`), or the live one again
    /// (`None`, stored empty: nothing waits), so that a document the source no longer serves is
    /// never paired with the other source's next one.
    fn record_latest(&self, doc: Option<&Shared>) {
        let bytes = doc.map(Shared::encode).unwrap_or_default();
        if let Err(status) = hostcalls::set_shared_data(&self.pending_key, Some(&bytes), None) {
            warn(&format!(
                "switchyard: cannot write shared data {} ({status:?})",
                self.pending_key
            ));
        }
    }

    /// The latest document fetched from this source by any worker, if it is not the live one.
    fn waiting(&self) -> Option<Shared> {
        let bytes = hostcalls::get_shared_data(&self.pending_key).ok()?.0?;
        let shared = Shared::decode(&bytes)?;
        (self.current.as_ref().map(|c| &c.body) != Some(&shared.body)).then_some(shared)
    }
}

/// `<cluster>:<authority><path>`: names a source's keys in shared data.
fn source_id(source: &RemoteSource) -> String {
    format!("{}:{}{}", source.cluster, source.authority, source.path)
}

/// Writes `value` under `key` unless the key exists (a write without CAS creates or replaces).
fn create_if_absent(key: &str, value: &[u8]) {
    if let Ok((None, _)) = hostcalls::get_shared_data(key) {
        let _ = hostcalls::set_shared_data(key, Some(value), None);
    }
}

/// The live documents: the policy and the consent records every worker serves, stored under
/// one key so that they change together. Only a pair the engine accepted is ever written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LivePair {
    policy: Option<Shared>,
    consent: Option<Shared>,
}

impl LivePair {
    fn get(&self, kind: Kind) -> Option<&Shared> {
        match kind {
            Kind::Policy => self.policy.as_ref(),
            Kind::Consent => self.consent.as_ref(),
        }
    }

    fn with(mut self, kind: Kind, doc: Shared) -> LivePair {
        match kind {
            Kind::Policy => self.policy = Some(doc),
            Kind::Consent => self.consent = Some(doc),
        }
        self
    }

    /// `switchyard-live/1 <policy length> <consent length>\n` (a length of `-` for a document
    /// not fetched yet), then the two documents in the shared-document format.
    fn encode(&self) -> Vec<u8> {
        let policy = self.policy.as_ref().map(Shared::encode);
        let consent = self.consent.as_ref().map(Shared::encode);
        let len = |d: &Option<Vec<u8>>| d.as_ref().map_or("-".to_string(), |d| d.len().to_string());
        let mut out = format!("{LIVE_FORMAT} {} {}\n", len(&policy), len(&consent)).into_bytes();
        out.extend(policy.unwrap_or_default());
        out.extend(consent.unwrap_or_default());
        out
    }

    fn decode(bytes: &[u8]) -> Option<LivePair> {
        let header_end = bytes.iter().position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(&bytes[..header_end]).ok()?;
        let mut fields = header.split(' ');
        if fields.next()? != LIVE_FORMAT {
            return None;
        }
        let mut rest = &bytes[header_end + 1..];
        let mut next = |field: &str| -> Option<Option<Shared>> {
            if field == "-" {
                return Some(None);
            }
            let len: usize = field.parse().ok()?;
            let doc = rest.get(..len)?;
            rest = &rest[len..];
            Shared::decode(doc).map(Some)
        };
        let policy = next(fields.next()?)?;
        let consent = next(fields.next()?)?;
        Some(LivePair { policy, consent })
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
    /// Shared key of the live pair ([`LivePair`]).
    live_key: String,
    /// CAS value of the live pair when this worker last read it.
    live_cas: Option<u32>,
    /// Content hash of the text the live policy was compiled from.
    live_hash: String,
    /// What the live policy awaits: the same text is a different policy once a source's first
    /// document arrives.
    live_awaiting: Awaiting,
    loaded_at_ms: u64,
    /// Pairs the engine refused, by content, with why: a source that keeps serving a broken
    /// document costs a download and a hash each interval, not a check (a 1 MB policy takes
    /// tens of milliseconds to check, on the worker that fetched it). The most recent last.
    refused: Vec<(PairId, String)>,
    /// Where the last policy text merged with a consent document takes the records, by the
    /// policy's hash (`None`: the bootstrap). A consent change leaves the policy as it was, so
    /// this is found once per policy, not on every change: finding it walks the policy's own
    /// consent table, and every worker merges every change while its requests wait.
    splice: Option<(Option<String>, Splice)>,
    failures: Option<u32>,
    swaps: Option<u32>,
    age: Option<u32>,
}

/// What a pair is compiled from, by content: the policy document's hash (none: the
/// bootstrap, fixed for a [`Remote`]) and the consent document's. Whether the engine accepts
/// a pair depends on nothing else: the load options are fixed for a [`Remote`] too.
#[derive(PartialEq, Eq)]
struct PairId(Option<String>, Option<String>);

impl PairId {
    fn of(pair: &LivePair) -> PairId {
        let hash = |doc: &Option<Shared>| doc.as_ref().map(|d| content_hash(&d.body));
        PairId(hash(&pair.policy), hash(&pair.consent))
    }
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
        let id = |s: Option<&RemoteSource>| s.map_or("-".to_string(), source_id);
        let live_key = format!("switchyard.live.{}|{}", id(source), id(consent_source));
        create_if_absent(&live_key, &LivePair::default().encode());
        Some(Remote {
            tick_ms: u64::from((shortest / 4).clamp(50, 1_000)),
            bootstrap: bootstrap.to_string(),
            bootstrap_sources: (source.cloned(), consent_source.cloned()),
            options,
            feeds,
            live_key,
            live_cas: None,
            live_hash: content_hash(bootstrap),
            live_awaiting: Awaiting::default(),
            loaded_at_ms: now_ms(),
            refused: Vec::new(),
            splice: None,
            failures: crate::metrics::define(MetricType::Counter, FETCH_FAILURES),
            swaps: crate::metrics::define(MetricType::Counter, SWAPS),
            age: crate::metrics::define(MetricType::Gauge, AGE_SECONDS),
        })
    }

    /// The tick period polling needs: a quarter of the shortest interval, 50 ms to 1 s.
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// At configuration: the policy to serve, and its text. The workers' fetched documents
    /// when they already serve some (an ECDS push of a new bootstrap while sources are live);
    /// else the bootstrap (compiled by the caller) with the parts awaiting their source served
    /// safe. An error when the bootstrap cannot take the live consent records: the
    /// configuration is then refused, and Envoy keeps the one that works.
    pub fn join_live(
        &mut self,
        bootstrap: CompiledPolicy,
        text: String,
    ) -> Result<(CompiledPolicy, String), String> {
        let fetched = self.refresh();
        let pair = self.live_pair();
        if !fetched {
            let policy = bootstrap.with_awaiting(self.awaiting(&pair));
            self.live_awaiting = policy.awaiting();
            return Ok((policy, text));
        }
        let (policy, text) = self
            .compile(&pair, "they were")
            .map_err(|why| format!("it cannot serve the documents the workers fetched: {why}"))?;
        self.live_hash = policy.content_hash().to_string();
        self.live_awaiting = policy.awaiting();
        Ok((policy, text))
    }

    /// The parts of `pair` still awaiting their source's first document and served safe
    /// (`until_fetched`): a source this worker polls whose document the pair lacks.
    fn awaiting(&self, pair: &LivePair) -> Awaiting {
        let (source, consent_source) = &self.bootstrap_sources;
        let safe = |s: &Option<RemoteSource>| {
            s.as_ref()
                .is_some_and(|s| s.until_fetched == UntilFetched::Safe)
        };
        Awaiting {
            policy: safe(source) && pair.policy.is_none(),
            consent: safe(consent_source) && pair.consent.is_none(),
        }
    }

    /// Every tick: adopt what another worker fetched, fetch if this worker wins the lease,
    /// update the age gauge. Returns a policy to install, if one changed.
    pub fn on_tick(&mut self, live: Option<&CompiledPolicy>) -> Option<CompiledPolicy> {
        let now = now_ms();
        let swap = if self.refresh() {
            self.adopt(live, now)
        } else {
            None
        };
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
        let asked_about = self.feeds[index]
            .in_flight
            .take()
            .and_then(|call| call.asked_about);
        let now = now_ms();
        let fetched = match read_response(num_headers, body_size) {
            Ok(fetched) => fetched,
            Err(why) => {
                self.fail(index, live, &why);
                return None;
            }
        };
        let Fetched::Document { etag, body } = fetched else {
            if let Some(refused) = asked_about {
                // Still the document refused before: refused again (counted, and not checked
                // again, by its content hash), or served now if its partner has arrived since.
                return self.apply(index, refused, live, now);
            }
            log(
                LogLevel::Debug,
                &format!("switchyard: {} not modified", self.feeds[index].describe()),
            );
            // The server serves the live document again: nothing of this source is waiting.
            self.feeds[index].record_latest(None);
            return None;
        };
        let shared = Shared {
            etag,
            fetched_at_ms: now,
            body,
        };
        // Unchanged (a server that ignores If-None-Match): as a 304.
        if self.feeds[index].current.as_ref().map(|c| &c.body) == Some(&shared.body) {
            self.feeds[index].record_latest(None);
            return None;
        }
        self.feeds[index].record_latest(Some(&shared));
        self.apply(index, shared, live, now)
    }

    /// Makes a fetched document live with the other source's document, if the engine accepts
    /// the pair, and publishes the pair for every worker. The partner tried first is the other
    /// source's latest fetch still waiting (a policy and the consent records that go with it
    /// arrive one after the other), then its live document. The pair is written with the CAS
    /// value it was read with, so two workers applying at once cannot publish two different
    /// pairs: the second one re-reads and decides again against the first one's.
    fn apply(
        &mut self,
        index: usize,
        doc: Shared,
        live: Option<&CompiledPolicy>,
        now: u64,
    ) -> Option<CompiledPolicy> {
        let kind = self.feeds[index].kind;
        // Another worker may have published since this one last looked: if this document is
        // refused, that pair is still to be served here.
        let mut live_changed = false;
        for _ in 0..MAX_PUBLISH_ATTEMPTS {
            live_changed |= self.refresh();
            let base = self.live_pair();
            let mut candidates = Vec::with_capacity(2);
            if let Some(other) = self.feeds.iter().find(|f| f.kind != kind) {
                if let Some(waiting) = other.waiting() {
                    candidates.push(base.clone().with(other.kind, waiting));
                }
            }
            candidates.push(base);
            let mut why = String::new();
            let mut chosen = None;
            for candidate in candidates {
                let candidate = candidate.with(kind, doc.clone());
                let subject = format!("the {} document was", kind.name());
                match self.compile(&candidate, &subject) {
                    Ok((policy, text)) => {
                        chosen = Some((candidate, policy, text));
                        break;
                    }
                    Err(refused) => why = refused,
                }
            }
            let Some((pair, policy, text)) = chosen else {
                self.fail(index, live, &why);
                return if live_changed {
                    self.adopt(live, now)
                } else {
                    None
                };
            };
            match hostcalls::set_shared_data(&self.live_key, Some(&pair.encode()), self.live_cas)
            {
                Err(Status::CasMismatch) => continue,
                Err(status) => warn(&format!(
                    "switchyard: cannot write shared data {} ({status:?}); other workers keep their policy until the next fetch",
                    self.live_key
                )),
                Ok(()) => {
                    self.live_cas = hostcalls::get_shared_data(&self.live_key)
                        .ok()
                        .and_then(|(_, cas)| cas);
                }
            }
            self.set_current(pair);
            return self.install(live, policy, &text, now, true);
        }
        self.fail(
            index,
            live,
            "the live documents kept changing while this one was checked; it is tried again at the next fetch",
        );
        self.adopt(live, now)
    }

    /// Reads the live pair; true when it changed since this worker last read it.
    fn refresh(&mut self) -> bool {
        let (bytes, cas) = match hostcalls::get_shared_data(&self.live_key) {
            Ok(found) => found,
            Err(status) => {
                warn(&format!(
                    "switchyard: cannot read shared data {} ({status:?})",
                    self.live_key
                ));
                return false;
            }
        };
        if cas.is_some() && cas == self.live_cas {
            return false;
        }
        self.live_cas = cas;
        let Some(pair) = bytes.as_deref().map(LivePair::decode) else {
            return false;
        };
        let Some(pair) = pair else {
            warn(&format!(
                "switchyard: shared data {} is not a switchyard document; ignoring it",
                self.live_key
            ));
            return false;
        };
        let changed = pair != self.live_pair();
        self.set_current(pair);
        changed
    }

    fn live_pair(&self) -> LivePair {
        let mut pair = LivePair::default();
        for feed in &self.feeds {
            if let Some(doc) = &feed.current {
                pair = pair.with(feed.kind, doc.clone());
            }
        }
        pair
    }

    fn set_current(&mut self, pair: LivePair) {
        for feed in &mut self.feeds {
            feed.current = pair.get(feed.kind).cloned();
        }
    }

    /// The policy a pair gives (the bootstrap where it has no policy document, the policy's
    /// own tenant records where it has no consent document), and the text it was compiled from.
    /// `subject` names what is refused in the message (`the policy document was`). A pair
    /// refused before is refused again unchecked, with the same reasons.
    fn compile(
        &mut self,
        pair: &LivePair,
        subject: &str,
    ) -> Result<(CompiledPolicy, String), String> {
        let id = PairId::of(pair);
        if let Some((_, why)) = self.refused.iter().find(|(seen, _)| *seen == id) {
            return Err(format!(
                "{subject} refused{why} (the same documents as refused before, not checked again)"
            ));
        }
        match self.check(pair, &id) {
            Ok(compiled) => Ok(compiled),
            Err(why) => {
                if self.refused.len() == REMEMBERED_REFUSALS {
                    self.refused.remove(0);
                }
                let message = format!("{subject} refused{why}");
                self.refused.push((id, why));
                Err(message)
            }
        }
    }

    /// The policy document of a pair: the fetched one, else the bootstrap.
    fn policy_text<'a>(&'a self, pair: &'a LivePair) -> &'a str {
        pair.policy
            .as_ref()
            .map_or(self.bootstrap.as_str(), |fetched| fetched.body.as_str())
    }

    /// Where the pair's policy takes consent records: remembered from the last merge when the
    /// policy is the same text, else found (and a fetched policy checked to be JSON; the
    /// bootstrap has loaded already).
    fn splice(&mut self, pair: &LivePair, id: &PairId) -> Result<Splice, String> {
        if let Some((policy, splice)) = &self.splice {
            if *policy == id.0 {
                return Ok(splice.clone());
            }
        }
        let splice = Splice::find(self.policy_text(pair), pair.policy.is_none())?;
        self.splice = Some((id.0.clone(), splice.clone()));
        Ok(splice)
    }

    /// Merges and compiles a pair (`id`: its documents' hashes); an error says why after
    /// "refused": ` (2 problems); …` or `: the consent document …`.
    fn check(&mut self, pair: &LivePair, id: &PairId) -> Result<(CompiledPolicy, String), String> {
        let text = match &pair.consent {
            None => self.policy_text(pair).to_string(),
            Some(consent) => {
                let splice = self.splice(pair, id).map_err(|why| format!(": {why}"))?;
                splice
                    .merge(self.policy_text(pair), &consent.body)
                    .map_err(|why| format!(": {why}"))?
            }
        };
        let options = LoadOptions {
            awaiting: self.awaiting(pair),
            ..self.options.clone()
        };
        match switchyard_policy::load_with(&text, &options) {
            Ok(compiled) => Ok((compiled, text)),
            Err(errors) => {
                let mut why = format!(
                    " ({} problem{})",
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
                Err(why)
            }
        }
    }

    /// A worker's own view changed through shared data: recompile and swap.
    fn adopt(&mut self, live: Option<&CompiledPolicy>, now: u64) -> Option<CompiledPolicy> {
        let pair = self.live_pair();
        match self.compile(&pair, "the documents were") {
            Ok((policy, text)) => self.install(live, policy, &text, now, false),
            Err(why) => {
                // Only a pair the engine accepted is published, and every worker loads with
                // the same node options: this is a bootstrap that no longer fits (refused at
                // configuration) or a damaged store.
                log(
                    LogLevel::Error,
                    &format!("switchyard: shared policy not adopted: {why}"),
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
        let hash = policy.content_hash().to_string();
        if hash == self.live_hash && policy.awaiting() == self.live_awaiting {
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
            crate::audit::fetched(text, &policy);
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
        self.live_awaiting = policy.awaiting();
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
        // Ask about the document fetched last when it was refused (or waits for its partner),
        // so a server still serving a broken megabyte policy answers 304 instead of sending it
        // every interval; else about the live one.
        let asked_about = feed.waiting().filter(|w| !w.etag.is_empty());
        let etag = match &asked_about {
            Some(waiting) => waiting.etag.clone(),
            None => feed
                .current
                .as_ref()
                .map(|c| c.etag.clone())
                .unwrap_or_default(),
        };
        if !etag.is_empty() {
            request.push(("if-none-match", &etag));
        }
        let timeout = Duration::from_millis(u64::from(feed.source.timeout_ms));
        match hostcalls::dispatch_http_call(&feed.source.cluster, request, None, vec![], timeout) {
            Ok(token) => {
                feed.in_flight = Some(InFlight {
                    token,
                    started_ms: now,
                    asked_about,
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

    fn record_age(&self, now: u64) {
        if let Some(id) = self.age {
            let _ = hostcalls::record_metric(id, now.saturating_sub(self.loaded_at_ms) / 1_000);
        }
    }
}

fn read_response(num_headers: usize, body_size: usize) -> Result<Fetched, String> {
    if num_headers == 0 {
        return Err("no response (connection failure, reset or timeout)".to_string());
    }
    // Raw bytes: the SDK's header reader panics on a non-UTF-8 value (see `abi`).
    let bytes = abi::get_header_map_bytes(HTTP_CALL_RESPONSE_HEADERS)
        .map_err(|status| format!("cannot read the response headers (status {})", status.0))?;
    let status = headers::find(&bytes, ":status").unwrap_or("");
    match status {
        "304" => return Ok(Fetched::NotModified),
        "200" => {}
        "" => return Err("the response has no status".to_string()),
        other => return Err(format!("status {other}")),
    }
    let etag = headers::find(&bytes, "etag")
        .unwrap_or("")
        .trim()
        .to_string();
    // An ETag is a header value: it cannot hold a line break, but be sure (shared format).
    let etag = if etag.contains('\n') {
        String::new()
    } else {
        etag
    };
    // Refused before it is read: a body far beyond what a policy may be would otherwise grow
    // the VM's memory (which never shrinks) or exhaust it.
    if body_size > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "the body is {body_size} bytes; the limit is {MAX_DOCUMENT_BYTES}"
        ));
    }
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
        assert_eq!(Shared::decode(&doc.encode()), Some(doc.clone()));
        assert_eq!(Shared::decode(b"other\n\n1\n{}"), None);
        for pair in [
            LivePair::default(),
            LivePair::default().with(Kind::Consent, doc.clone()),
            LivePair::default().with(Kind::Policy, doc.clone()).with(
                Kind::Consent,
                Shared {
                    body: "é\n{}".into(),
                    ..doc
                },
            ),
        ] {
            assert_eq!(LivePair::decode(&pair.encode()), Some(pair));
        }
        assert_eq!(LivePair::decode(b"switchyard-live/1 5 -\nshort"), None);
        assert_eq!(LivePair::decode(b"switchyard/1\n"), None);
    }
}
