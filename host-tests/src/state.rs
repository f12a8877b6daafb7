//! Everything the fake host knows, as plain data: what the module asked the host to do is
//! recorded here, and tests assert on it (never on the order of host calls).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::{Func, Memory};

use crate::headers::HeaderMap;

/// proxy-wasm log levels (`proxy_log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    pub(crate) fn from_abi(level: u32) -> Option<Self> {
        Some(match level {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }

    pub(crate) fn to_abi(self) -> u32 {
        self as u32
    }
}

/// One `proxy_log` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub level: LogLevel,
    pub message: String,
}

/// proxy-wasm metric types (`proxy_define_metric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub(crate) fn from_abi(kind: u32) -> Option<Self> {
        Some(match kind {
            0 => MetricKind::Counter,
            1 => MetricKind::Gauge,
            2 => MetricKind::Histogram,
            _ => return None,
        })
    }
}

/// One defined metric. Envoy keys stats by name: defining a name twice gives the same stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub value: i64,
}

/// A `proxy_send_local_response` call: the reply Envoy sends instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub details: Vec<u8>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub grpc_status: i32,
}

impl LocalReply {
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A `proxy_call_foreign_function` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignCall {
    pub name: String,
    pub arguments: Vec<u8>,
}

/// What a proxy-wasm callback answered for a stream (`proxy_on_request_headers`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// `StopIteration`: Envoy holds the stream (or has already sent a local reply).
    Pause,
    Other(u32),
}

impl Action {
    pub(crate) fn from_abi(value: u32) -> Self {
        match value {
            0 => Action::Continue,
            1 => Action::Pause,
            other => Action::Other(other),
        }
    }
}

/// A `proxy_http_call` the module made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    pub cluster: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

impl HttpCall {
    /// A request header's value as text (`":path"`, `"if-none-match"`).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Envoy's shared data: key → (value, CAS value), CAS values from one counter for the store.
#[derive(Debug, Default, Clone)]
pub struct SharedData(Arc<Mutex<SharedStore>>);

#[derive(Debug, Default)]
struct SharedStore {
    entries: BTreeMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

impl SharedData {
    fn store(&self) -> std::sync::MutexGuard<'_, SharedStore> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value and its CAS value.
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.store().entries.get(key).cloned()
    }

    /// Envoy's semantics: CAS 0 writes unconditionally; any other must match the key's current
    /// CAS value (a key that does not exist yet is written whatever the CAS). Each write gets a
    /// new CAS value. Returns a proxy-wasm status.
    pub fn set(&self, key: &str, value: Vec<u8>, cas: u32) -> u32 {
        let mut store = self.store();
        if let Some((_, current)) = store.entries.get(key) {
            if cas != 0 && cas != *current {
                return status::CAS_MISMATCH;
            }
        }
        store.last_cas = store.last_cas.wrapping_add(1).max(1);
        let next = store.last_cas;
        store.entries.insert(key.to_string(), (value, next));
        status::OK
    }

    /// Every key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.store().entries.keys().cloned().collect()
    }

    /// Whether two handles are the same store.
    pub fn same_as(&self, other: &SharedData) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// proxy-wasm status codes the host returns.
pub(crate) mod status {
    pub const OK: u32 = 0;
    pub const NOT_FOUND: u32 = 1;
    pub const BAD_ARGUMENT: u32 = 2;
    pub const EMPTY: u32 = 7;
    pub const CAS_MISMATCH: u32 = 8;
}

/// The eight header maps a proxy-wasm host knows, by `MapType` value.
pub const MAP_TYPES: usize = 8;
pub const REQUEST_HEADERS: usize = 0;
pub const REQUEST_TRAILERS: usize = 1;
pub const RESPONSE_HEADERS: usize = 2;
pub const RESPONSE_TRAILERS: usize = 3;
pub const HTTP_CALL_RESPONSE_HEADERS: usize = 6;
pub const HTTP_CALL_RESPONSE_TRAILERS: usize = 7;

/// Buffers (`BufferType`): request/response bodies, VM and plugin configuration, ...
pub const BUFFER_TYPES: usize = 9;
pub const HTTP_CALL_RESPONSE_BODY: usize = 4;
pub const VM_CONFIGURATION: usize = 6;
pub const PLUGIN_CONFIGURATION: usize = 7;

/// The host state one wasm instance sees.
#[derive(Debug, Default)]
pub struct HostState {
    /// Header maps by `MapType`.
    pub maps: [HeaderMap; MAP_TYPES],
    /// Which maps exist in the current phase: Envoy has no response headers while the request
    /// headers are being processed, and no maps at all in a root context. Touching a map that
    /// does not exist gets `BadArgument`, which the Rust SDK turns into a panic.
    pub map_available: [bool; MAP_TYPES],
    /// Bytes cut from the end of every map `proxy_get_header_map_pairs` serves: a damaged map,
    /// whose last entries do not fit (0: the map whole, as Envoy sends it).
    pub pairs_cut_tail: usize,
    /// Buffers by `BufferType`.
    pub buffers: [Vec<u8>; BUFFER_TYPES],
    /// Properties the host answers `proxy_get_property` with, keyed by path segments
    /// (`["source", "address"]`).
    pub properties: BTreeMap<Vec<String>, Vec<u8>>,
    /// Filter state written by `proxy_set_property`, keyed as Envoy keys it: `wasm.` followed
    /// by the path segments joined with `.` (an access log reads
    /// `%FILTER_STATE(wasm.NAME:PLAIN)%`).
    pub filter_state: BTreeMap<String, Vec<u8>>,
    pub logs: Vec<LogEntry>,
    /// The level `proxy_get_log_level` reports.
    pub log_level: u32,
    /// Metrics by id (id = index + 1, so 0 is never a valid id).
    pub metrics: Vec<Metric>,
    /// `proxy_define_metric` calls: Envoy adds an entry to its tables for each one, even for a
    /// name it has, and never removes them.
    pub metric_definitions: usize,
    pub local_reply: Option<LocalReply>,
    /// Foreign functions the host offers; calls to others get `NotFound`, like Envoy without
    /// the function registered.
    pub foreign_functions: Vec<String>,
    pub foreign_calls: Vec<ForeignCall>,
    /// `proxy_get_current_time_nanoseconds` and WASI clocks.
    pub time_nanos: u64,
    /// `proxy_get_current_time_nanoseconds` calls: each is a host call Envoy pays for.
    pub clock_reads: u32,
    /// (map type, key) of every `proxy_get_header_map_value` call, in order: what the filter
    /// looked up one header at a time (the whole map is read with `get_header_map_pairs`).
    pub header_value_reads: Vec<(u32, Vec<u8>)>,
    /// Envoy's shared data (per `vm_id`, shared by every worker's VM): hosts made with
    /// [`crate::FakeHost::share_data_with`] share one store, like two Envoy workers.
    pub shared_data: SharedData,
    /// Clusters `proxy_http_call` knows; a call to any other gets `BadArgument`, as in Envoy.
    pub http_call_clusters: Vec<String>,
    /// Calls made with `proxy_http_call` and not answered yet (see
    /// [`crate::FakeHost::respond_http_call`]).
    pub http_calls: Vec<HttpCall>,
    /// Every call ever made, answered or not.
    pub http_call_log: Vec<HttpCall>,
    pub(crate) next_http_token: u32,
    pub shared_queues: Vec<(String, std::collections::VecDeque<Vec<u8>>)>,
    pub tick_period_ms: u32,
    pub effective_context: u32,
    /// `proxy_continue_stream` / `proxy_close_stream` calls, by `StreamType`.
    pub continued_streams: Vec<u32>,
    pub closed_streams: Vec<u32>,
    pub done_calls: u32,
    /// WASI `fd_write` to fd 1 and 2.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// State of the WASI `random_get` generator (deterministic, for reproducible runs).
    pub random_state: u64,
    /// The guest's memory and allocator, found once the instance exists.
    pub(crate) memory: Option<Memory>,
    pub(crate) allocate: Option<Func>,
}

impl HostState {
    pub(crate) fn new() -> Self {
        HostState {
            log_level: LogLevel::Trace.to_abi(),
            foreign_functions: vec!["clear_route_cache".to_string()],
            // 2026-11-22T00:00:00Z: a fixed clock keeps runs reproducible.
            time_nanos: 1_795_305_600_000_000_000,
            random_state: 0x5eed_5eed_5eed_5eed,
            next_http_token: 1,
            ..HostState::default()
        }
    }

    /// The metric with this name, if the module defined it.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|metric| metric.name == name)
    }

    pub(crate) fn metric_mut(&mut self, id: u32) -> Option<&mut Metric> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.metrics.get_mut(index)
    }

    /// Clears what belongs to one HTTP stream before the next begins.
    pub(crate) fn reset_stream(&mut self) {
        for map in &mut self.maps {
            *map = HeaderMap::new();
        }
        self.map_available = [false; MAP_TYPES];
        self.buffers[0].clear();
        self.buffers[1].clear();
        self.filter_state.clear();
        self.local_reply = None;
        self.foreign_calls.clear();
        self.continued_streams.clear();
        self.closed_streams.clear();
    }
}
