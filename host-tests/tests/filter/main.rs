//! The switchyard filter (`switchyard_plugin.wasm`, release build) driven through the fake
//! proxy-wasm host. One test binary, so the module is compiled once for every test.
//!
//! Build the module first: `bash plugin/build.sh`
//! (or point `SWITCHYARD_WASM` at a build).

// Tests fail by panicking; the workspace's lints against that are for the product code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod bad_policy;
mod common;
mod evidence;
mod exports;
mod golden;
mod hostile_documents;
mod metrics_exposure;
mod owned_headers;
mod reject;
mod remote_source;
mod request_only;
mod robustness;
// The plugin's own test encoder for Struct configurations, so both test layers encode alike.
#[path = "../../../plugin/src/struct_encode.rs"]
mod struct_encode;
