//! A fake proxy-wasm host for testing switchyard's Envoy filter without Envoy.
//!
//! [`FakeHost`] loads the release `switchyard_plugin.wasm` into wasmtime, implements every
//! host function the module imports (proxy-wasm ABI 0.2.1 as the Rust SDK 0.2.5 uses it, plus
//! stubs for the few WASI calls a `wasm32-wasip1` module imports) as plain state, and drives
//! the module through Envoy's lifecycle. Tests then assert on that state: headers sent
//! upstream, local replies, metrics, logs, filter state.
//!
//! ```no_run
//! use switchyard_host_tests::{FakeHost, HttpRequest};
//! # fn main() -> wasmtime::Result<()> {
//! let mut host = FakeHost::load_default()?;
//! assert!(host.configure(br#"{"version": "1", "flags": []}"#)?);
//! let result = host.request(&HttpRequest::new("GET", "/", "api.example"))?;
//! assert!(result.upstream().is_some());
//! # Ok(()) }
//! ```

mod abi;
mod headers;
mod host;
mod memory;
mod state;
mod wasi;

use std::path::{Path, PathBuf};

pub use headers::HeaderMap;
pub use host::{FakeHost, HttpRequest, RequestResult};
pub use state::{
    Action, ForeignCall, HostState, HttpCall, LocalReply, LogEntry, LogLevel, Metric, MetricKind,
    SharedData,
};

/// The command that builds the module these tests load.
pub const BUILD_COMMAND: &str = "bash plugin/build.sh";

/// Where the filter's `.wasm` is: `$SWITCHYARD_WASM` if set, else
/// `target/wasm32-wasip1/release/switchyard_plugin.wasm` under `$CARGO_TARGET_DIR` or the
/// workspace. A missing file is an error that says how to build it; so is a default-location
/// build older than the plugin's or the engine's sources (testing a stale module would test
/// old code). An explicit `$SWITCHYARD_WASM` is taken as it is.
pub fn wasm_path() -> Result<PathBuf, String> {
    module_path("switchyard_plugin.wasm", "SWITCHYARD_WASM")
}

/// Where the request-only module is (`switchyard_plugin_request_only.wasm`, beside the full
/// one; `$SWITCHYARD_REQUEST_ONLY_WASM` if set), checked as [`wasm_path`] checks.
pub fn request_only_wasm_path() -> Result<PathBuf, String> {
    module_path(
        "switchyard_plugin_request_only.wasm",
        "SWITCHYARD_REQUEST_ONLY_WASM",
    )
}

fn module_path(file_name: &str, variable: &str) -> Result<PathBuf, String> {
    let explicit = std::env::var_os(variable).map(PathBuf::from);
    let path = match &explicit {
        Some(path) => path.clone(),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            target.join("wasm32-wasip1/release").join(file_name)
        }
    };
    if !path.is_file() {
        return Err(format!(
            "{file_name} not found at {}: build it first with `{BUILD_COMMAND}` (from the \
             workspace root), or set {variable} to its path",
            path.display()
        ));
    }
    if explicit.is_none() {
        if let Some(newer) = newer_source(&path) {
            return Err(format!(
                "{} is older than {}: rebuild it with `{BUILD_COMMAND}` (from the workspace \
                 root), or set {variable} to the module to test",
                path.display(),
                newer.display()
            ));
        }
    }
    Ok(path)
}

/// A source file of the module modified after the module was built, if any. The sources are
/// the ones Cargo's dep-info (`switchyard_plugin.d`, next to the module) lists, so this holds
/// exactly when `cargo build` would rebuild; without dep-info nothing is checked.
fn newer_source(wasm: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(wasm).and_then(|m| m.modified()).ok()?;
    let dep_info = std::fs::read_to_string(wasm.with_extension("d")).ok()?;
    let (_, sources) = dep_info.lines().next()?.split_once(": ")?;
    // Paths are space-separated, with spaces inside a path escaped as `\ `.
    let sources = sources.replace("\\ ", "\0");
    sources
        .split_whitespace()
        .map(|source| PathBuf::from(source.replace('\0', " ")))
        .find(|source| {
            std::fs::metadata(source)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified > built)
        })
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
