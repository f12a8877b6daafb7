//! [`FakeHost`]: loads the filter's `.wasm` and drives it through the proxy-wasm lifecycle
//! the way Envoy does.
//!
//! ```text
//! _initialize (or _start)
//! proxy_on_context_create(root, 0) -> proxy_on_vm_start(root, n) -> proxy_on_configure(root, n)
//! per request:
//!   proxy_on_context_create(ctx, root)
//!   proxy_on_request_headers(ctx, n, eos)
//!   proxy_on_response_headers(ctx, n, eos)   (the upstream's response, or the local reply:
//!                                             Envoy runs a local reply through the encoder
//!                                             filters too, the sender included)
//!   proxy_on_done(ctx) -> proxy_on_log(ctx) -> proxy_on_delete(ctx)
//! ```
//!
//! Like Envoy, the host skips an end-of-stream callback the module does not export (the
//! shipped filter exports neither `proxy_on_done` nor `proxy_on_log`: plugin/build.sh).
//!
//! A trap (a panic in the guest aborts, which is a trap) marks the host broken, like Envoy
//! marking the VM failed; every later call returns an error.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use wasmtime::{
    bail, format_err, Config, Engine, Instance, Linker, Module, Result, Store, WasmParams,
    WasmResults,
};

use crate::headers::HeaderMap;
use crate::state::{
    Action, ForeignCall, HostState, HttpCall, LocalReply, LogEntry, LogLevel,
    HTTP_CALL_RESPONSE_BODY, HTTP_CALL_RESPONSE_HEADERS, HTTP_CALL_RESPONSE_TRAILERS,
    PLUGIN_CONFIGURATION, REQUEST_HEADERS, REQUEST_TRAILERS, RESPONSE_HEADERS, RESPONSE_TRAILERS,
    VM_CONFIGURATION,
};

/// One engine for the process, and each module compiled once: compiling is the slow part,
/// instantiating is cheap, so every test can have a fresh host.
fn engine() -> Result<&'static Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(engine) = ENGINE.get() {
        return Ok(engine);
    }
    let mut config = Config::new();
    // For profiling the filter (bench/README.md): wasmtime writes /tmp/perf-PID.map so that
    // `perf report` names the module's functions.
    if std::env::var_os("SWITCHYARD_WASM_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config)?;
    Ok(ENGINE.get_or_init(|| engine))
}

fn compiled(path: &Path) -> Result<Module> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Module>>> = OnceLock::new();
    // Held while compiling, so tests starting together wait for one compile, not do several.
    let mut cache = MODULES
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| format_err!("a thread panicked while compiling the module"))?;
    if let Some(module) = cache.get(path) {
        return Ok(module.clone());
    }
    let bytes =
        std::fs::read(path).map_err(|e| format_err!("cannot read {}: {e}", path.display()))?;
    let module = Module::from_binary(engine()?, &bytes)?;
    cache.insert(path.to_path_buf(), module.clone());
    Ok(module)
}

/// One HTTP request as Envoy hands it to a filter.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// Request headers, pseudo-headers (`:method`, `:path`, `:authority`) included, as raw
    /// bytes in order. Names are lowercased on the way in, as Envoy's codecs do.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The `source.address` property (`"10.1.2.3:5678"`, `"[::1]:5678"`); absent if `None`.
    pub source_address: Option<String>,
    /// `end_of_stream` for `proxy_on_request_headers` (true: a request without a body).
    pub end_of_stream: bool,
    /// The upstream's response headers; `:status: 200` if empty.
    pub response_headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// How long the upstream takes: the host's clock moves this far between the request
    /// headers and the upstream's response headers.
    pub upstream_ms: u64,
}

impl HttpRequest {
    /// A bodiless request with `:method`, `:path`, `:authority` and `:scheme` set.
    pub fn new(method: &str, path: &str, authority: &str) -> Self {
        HttpRequest::empty()
            .header(":method", method)
            .header(":path", path)
            .header(":authority", authority)
            .header(":scheme", "http")
    }

    /// No headers at all (not even pseudo-headers).
    pub fn empty() -> Self {
        HttpRequest {
            end_of_stream: true,
            ..HttpRequest::default()
        }
    }

    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    pub fn source_address(mut self, address: impl Into<String>) -> Self {
        self.source_address = Some(address.into());
        self
    }

    /// The upstream answers `ms` milliseconds after the request headers.
    pub fn upstream_takes(mut self, ms: u64) -> Self {
        self.upstream_ms = ms;
        self
    }

    pub fn response_header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.response_headers
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }
}

/// What became of one request.
#[derive(Debug, Clone)]
pub struct RequestResult {
    /// What `proxy_on_request_headers` answered.
    pub request_action: Action,
    /// The request headers after the filter ran (what goes upstream if forwarded).
    pub request_headers: HeaderMap,
    /// The local reply, if the filter sent one.
    pub local_reply: Option<LocalReply>,
    /// What `proxy_on_response_headers` answered, if the response phase ran.
    pub response_action: Option<Action>,
    /// Response headers after the filter ran (what goes downstream).
    pub response_headers: HeaderMap,
    /// Filter state the filter set, keyed as Envoy keys it (`wasm.NAME`).
    pub filter_state: BTreeMap<String, Vec<u8>>,
    /// Logs written while this request was processed.
    pub logs: Vec<LogEntry>,
    pub foreign_calls: Vec<ForeignCall>,
}

impl RequestResult {
    /// The headers Envoy would send upstream: `None` when the filter paused or replied locally.
    pub fn upstream(&self) -> Option<&HeaderMap> {
        (self.request_action == Action::Continue && self.local_reply.is_none())
            .then_some(&self.request_headers)
    }

    /// A filter-state entry as text (`"wasm.switchyard_exposure"`).
    pub fn filter_state_str(&self, key: &str) -> Option<String> {
        self.filter_state
            .get(key)
            .map(|value| String::from_utf8_lossy(value).into_owned())
    }
}

/// A proxy-wasm host with one VM (one wasm instance) and at most one root context.
pub struct FakeHost {
    store: Store<HostState>,
    instance: Instance,
    imports: Vec<String>,
    exports: Vec<String>,
    root_id: Option<u32>,
    next_context_id: u32,
    broken: Option<String>,
}

impl FakeHost {
    /// Loads the filter at the default location (see [`crate::wasm_path`]).
    pub fn load_default() -> Result<Self> {
        let path = crate::wasm_path().map_err(wasmtime::Error::msg)?;
        Self::load(path)
    }

    /// Loads the request-only module (see [`crate::request_only_wasm_path`]).
    pub fn load_request_only() -> Result<Self> {
        let path = crate::request_only_wasm_path().map_err(wasmtime::Error::msg)?;
        Self::load(path)
    }

    /// Compiles (once per path per process), instantiates and initializes the module.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let module = compiled(path)?;
        let engine = engine()?;
        let mut linker = Linker::new(engine);
        crate::abi::add_to_linker(&mut linker)?;
        crate::wasi::add_to_linker(&mut linker)?;
        let mut store = Store::new(engine, HostState::new());
        let imports: Vec<String> = module
            .imports()
            .map(|import| format!("{}.{}", import.module(), import.name()))
            .collect();
        let missing: Vec<&String> = module
            .imports()
            .zip(&imports)
            .filter(|(import, _)| linker.get_by_import(&mut store, import).is_none())
            .map(|(_, name)| name)
            .collect();
        if !missing.is_empty() {
            bail!(
                "the fake host lacks imports {missing:?} of {}",
                path.display()
            );
        }
        let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
        let instance = linker.instantiate(&mut store, &module)?;
        if instance
            .get_func(&mut store, "proxy_abi_version_0_2_1")
            .is_none()
        {
            bail!("{} does not export proxy_abi_version_0_2_1", path.display());
        }
        let memory = instance.get_memory(&mut store, "memory");
        let allocate = instance
            .get_func(&mut store, "proxy_on_memory_allocate")
            .or_else(|| instance.get_func(&mut store, "malloc"));
        let state = store.data_mut();
        state.memory = memory;
        state.allocate = allocate;
        let mut host = FakeHost {
            store,
            instance,
            imports,
            exports,
            root_id: None,
            next_context_id: 1,
            broken: None,
        };
        // A reactor has `_initialize`; a command module `_start`. Envoy calls whichever exists.
        if host
            .instance
            .get_func(&mut host.store, "_initialize")
            .is_some()
        {
            host.call::<(), ()>("_initialize", ())?;
        } else if host.instance.get_func(&mut host.store, "_start").is_some() {
            host.call::<(), ()>("_start", ())?;
        }
        Ok(host)
    }

    /// The module's imports, as `module.name`.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// The names of the module's exports.
    pub fn export_names(&self) -> &[String] {
        &self.exports
    }

    /// Creates the root context and starts the VM (once), then delivers the plugin
    /// configuration; returns what `proxy_on_configure` answered. Configuring again
    /// reconfigures the same root context.
    pub fn configure(&mut self, configuration: &[u8]) -> Result<bool> {
        let root = match self.root_id {
            Some(root) => root,
            None => {
                let root = self.new_context_id();
                self.call::<(u32, u32), ()>("proxy_on_context_create", (root, 0))?;
                let vm_size = self.buffer_size(VM_CONFIGURATION);
                let started = self.call::<(u32, u32), u32>("proxy_on_vm_start", (root, vm_size))?;
                if started == 0 {
                    bail!("proxy_on_vm_start returned false");
                }
                self.root_id = Some(root);
                root
            }
        };
        self.store.data_mut().buffers[PLUGIN_CONFIGURATION] = configuration.to_vec();
        let size = self.buffer_size(PLUGIN_CONFIGURATION);
        let accepted = self.call::<(u32, u32), u32>("proxy_on_configure", (root, size))?;
        Ok(accepted != 0)
    }

    /// Sends one request through the filter (request headers, response headers, done, log,
    /// delete) and reports what became of it.
    pub fn request(&mut self, request: &HttpRequest) -> Result<RequestResult> {
        self.request_with(request, |_| Ok(()))
    }

    /// [`FakeHost::request`], running `meanwhile` after the request headers and before the
    /// response: a stream that stays open while the host ticks, swaps the policy or serves
    /// other streams. Those other streams start from a fresh stream state, so this stream's
    /// result keeps its request headers, reply and response but not its filter state.
    pub fn request_with(
        &mut self,
        request: &HttpRequest,
        mut meanwhile: impl FnMut(&mut Self) -> Result<()>,
    ) -> Result<RequestResult> {
        let Some(root) = self.root_id else {
            bail!("configure the filter before sending requests");
        };
        let logs_before = self.store.data().logs.len();
        let state = self.store.data_mut();
        state.reset_stream();
        state.maps[REQUEST_HEADERS] = HeaderMap::from_pairs(&request.headers);
        state.map_available[REQUEST_HEADERS] = true;
        state.map_available[REQUEST_TRAILERS] = true;
        let source = vec!["source".to_string(), "address".to_string()];
        match &request.source_address {
            Some(address) => state.properties.insert(source, address.as_bytes().to_vec()),
            None => state.properties.remove(&source),
        };

        let ctx = self.new_context_id();
        self.call::<(u32, u32), ()>("proxy_on_context_create", (ctx, root))?;
        let count = self.map_len(REQUEST_HEADERS);
        let eos = u32::from(request.end_of_stream);
        let request_action = Action::from_abi(
            self.call::<(u32, u32, u32), u32>("proxy_on_request_headers", (ctx, count, eos))?,
        );
        let request_headers = self.store.data().maps[REQUEST_HEADERS].clone();
        let local_reply = self.store.data().local_reply.clone();
        meanwhile(self)?;

        // The response phase: a local reply, or the upstream's answer if the request went on.
        let response = match (&local_reply, request_action) {
            (Some(reply), _) => {
                let mut headers = HeaderMap::from_pairs(&[(":status", reply.status.to_string())]);
                for (name, value) in reply.headers.iter() {
                    headers.add(name, value);
                }
                Some(headers)
            }
            (None, Action::Continue) if request.response_headers.is_empty() => {
                Some(HeaderMap::from_pairs(&[(":status", "200")]))
            }
            (None, Action::Continue) => Some(HeaderMap::from_pairs(&request.response_headers)),
            // Paused without a reply: Envoy would wait for a resume that never comes here.
            (None, _) => None,
        };
        let mut response_action = None;
        // Envoy calls a stream callback only if the module exports it (the request-only
        // module has no response callback).
        let response = response.filter(|_| self.exports("proxy_on_response_headers"));
        if let Some(headers) = response {
            let state = self.store.data_mut();
            if local_reply.is_none() {
                state.time_nanos += request.upstream_ms * 1_000_000;
            }
            state.maps[RESPONSE_HEADERS] = headers;
            state.map_available[RESPONSE_HEADERS] = true;
            state.map_available[RESPONSE_TRAILERS] = true;
            let count = self.map_len(RESPONSE_HEADERS);
            response_action = Some(Action::from_abi(
                self.call::<(u32, u32, u32), u32>("proxy_on_response_headers", (ctx, count, 1))?,
            ));
        }

        if self.exports("proxy_on_done") {
            self.call::<u32, u32>("proxy_on_done", ctx)?;
        }
        if self.exports("proxy_on_log") {
            self.call::<u32, ()>("proxy_on_log", ctx)?;
        }
        if self.exports("proxy_on_delete") {
            self.call::<u32, ()>("proxy_on_delete", ctx)?;
        }

        let state = self.store.data();
        Ok(RequestResult {
            request_action,
            request_headers,
            local_reply,
            response_action,
            response_headers: state.maps[RESPONSE_HEADERS].clone(),
            filter_state: state.filter_state.clone(),
            logs: state.logs.get(logs_before..).unwrap_or_default().to_vec(),
            foreign_calls: state.foreign_calls.clone(),
        })
    }

    /// Delivers one timer tick to the root context (`proxy_on_tick`), as Envoy does every
    /// [`HostState::tick_period_ms`] once the module set one.
    pub fn tick(&mut self) -> Result<()> {
        let Some(root) = self.root_id else {
            bail!("configure the filter before ticking");
        };
        self.call::<u32, ()>("proxy_on_tick", root)
    }

    /// Moves the host's clock forward.
    pub fn advance_ms(&mut self, ms: u64) {
        self.store.data_mut().time_nanos += ms * 1_000_000;
    }

    /// Advances the clock by the tick period the module set and ticks.
    pub fn advance_and_tick(&mut self) -> Result<()> {
        let period = self.store.data().tick_period_ms;
        if period == 0 {
            bail!("the module set no tick period");
        }
        self.advance_ms(u64::from(period));
        self.tick()
    }

    /// Shares `other`'s shared-data store from now on (two hosts = two Envoy workers of one
    /// `vm_id`). Call before configuring.
    pub fn share_data_with(&mut self, other: &FakeHost) {
        self.store.data_mut().shared_data = other.store.data().shared_data.clone();
    }

    /// Sets a string in the node metadata as Envoy 1.40 answers it: the string's bytes under
    /// `["xds", "node", "metadata", key]` (the older `["node", ...]` path is `NotFound` there).
    pub fn set_node_metadata(&mut self, key: &str, value: &str) {
        self.store.data_mut().properties.insert(
            ["xds", "node", "metadata", key].map(String::from).to_vec(),
            value.as_bytes().to_vec(),
        );
    }

    /// Lets `proxy_http_call` reach this cluster.
    pub fn add_cluster(&mut self, name: &str) {
        self.store
            .data_mut()
            .http_call_clusters
            .push(name.to_string());
    }

    /// Calls made and not answered yet.
    pub fn pending_http_calls(&self) -> &[HttpCall] {
        &self.store.data().http_calls
    }

    /// Answers a pending call: `proxy_on_http_call_response` with these response headers
    /// (`:status` first) and body, as Envoy does for a response (timeouts and connection
    /// failures included: Envoy answers those with a 504 or 503 of its own).
    pub fn respond_http_call(
        &mut self,
        token: u32,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<()> {
        let mut map = HeaderMap::from_pairs(&[(":status", status.to_string())]);
        for (name, value) in headers {
            map.add(name.as_bytes(), value.as_bytes());
        }
        self.deliver_http_call(token, Some((map, body.to_vec())))
    }

    /// Fails a pending call as Envoy does on a reset: no headers, no body.
    pub fn fail_http_call(&mut self, token: u32) -> Result<()> {
        self.deliver_http_call(token, None)
    }

    fn deliver_http_call(
        &mut self,
        token: u32,
        response: Option<(HeaderMap, Vec<u8>)>,
    ) -> Result<()> {
        let Some(root) = self.root_id else {
            bail!("no root context");
        };
        let state = self.store.data_mut();
        let Some(index) = state.http_calls.iter().position(|c| c.token == token) else {
            bail!("no pending http call with token {token}");
        };
        state.http_calls.remove(index);
        let (headers, body) = response.unwrap_or_default();
        let counts = (
            u32::try_from(headers.len()).unwrap_or(u32::MAX),
            u32::try_from(body.len()).unwrap_or(u32::MAX),
        );
        state.maps[HTTP_CALL_RESPONSE_HEADERS] = headers;
        state.map_available[HTTP_CALL_RESPONSE_HEADERS] = true;
        state.map_available[HTTP_CALL_RESPONSE_TRAILERS] = true;
        state.buffers[HTTP_CALL_RESPONSE_BODY] = body;
        let result = self.call::<(u32, u32, u32, u32, u32), ()>(
            "proxy_on_http_call_response",
            (root, token, counts.0, counts.1, 0),
        );
        let state = self.store.data_mut();
        state.maps[HTTP_CALL_RESPONSE_HEADERS] = HeaderMap::new();
        state.map_available[HTTP_CALL_RESPONSE_HEADERS] = false;
        state.map_available[HTTP_CALL_RESPONSE_TRAILERS] = false;
        state.buffers[HTTP_CALL_RESPONSE_BODY].clear();
        result
    }

    /// Every metric the module defined, by name.
    pub fn metrics(&self) -> BTreeMap<String, i64> {
        self.store
            .data()
            .metrics
            .iter()
            .map(|metric| (metric.name.clone(), metric.value))
            .collect()
    }

    /// One metric's value, if the module defined it.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.store.data().metric(name).map(|metric| metric.value)
    }

    /// Every log line since the module was loaded.
    pub fn logs(&self) -> &[LogEntry] {
        &self.store.data().logs
    }

    /// Log lines at `level` or above.
    pub fn logs_at_least(&self, level: LogLevel) -> Vec<&LogEntry> {
        self.logs()
            .iter()
            .filter(|log| log.level >= level)
            .collect()
    }

    pub fn state(&self) -> &HostState {
        self.store.data()
    }

    /// For presetting properties, foreign functions, the clock, ...
    pub fn state_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    /// Why the host is broken (the module trapped), if it is.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    fn new_context_id(&mut self) -> u32 {
        let id = self.next_context_id;
        self.next_context_id += 1;
        id
    }

    fn buffer_size(&self, index: usize) -> u32 {
        u32::try_from(self.store.data().buffers[index].len()).unwrap_or(u32::MAX)
    }

    fn map_len(&self, index: usize) -> u32 {
        u32::try_from(self.store.data().maps[index].len()).unwrap_or(u32::MAX)
    }

    /// The module's linear memory, in bytes (it only grows: a leak shows as growth).
    pub fn memory_size(&mut self) -> usize {
        let memory = self.store.data().memory;
        memory.map_or(0, |memory| memory.data_size(&self.store))
    }

    /// Whether the module exports this name (every callback is a function export).
    pub fn exports(&self, name: &str) -> bool {
        self.exports.iter().any(|export| export == name)
    }

    /// Calls an export; a trap breaks the host and the error carries the module's last
    /// critical/error logs (the plugin's panic hook logs the panic message at critical).
    fn call<P: WasmParams, R: WasmResults>(&mut self, name: &str, params: P) -> Result<R> {
        if let Some(why) = &self.broken {
            bail!("the module trapped earlier and is unusable: {why}");
        }
        let func = self
            .instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(|e| format_err!("export {name}: {e}"))?;
        match func.call(&mut self.store, params) {
            Ok(results) => Ok(results),
            Err(error) => {
                let last_words: Vec<String> = self
                    .logs_at_least(LogLevel::Error)
                    .iter()
                    .rev()
                    .take(3)
                    .map(|log| format!("{:?}: {}", log.level, log.message))
                    .collect();
                let why = format!("{name} trapped: {error:?}; last error logs: {last_words:?}");
                self.broken = Some(why.clone());
                bail!(why)
            }
        }
    }
}
