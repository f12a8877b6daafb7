//! The shipped module exports only the callbacks the filter implements: Envoy enters the VM
//! for every exported stream callback, so an unused one costs every request (plugin/build.sh).

use crate::common::{chat, example_policy, host, host_with};

/// What Envoy needs to run the filter: lifecycle, the two header phases, ticks and remote
/// sources' HTTP calls, stream cleanup (the SDK frees a stream's context in `proxy_on_delete`)
/// and the allocator the host uses to hand data back.
const IMPLEMENTED: [&str; 11] = [
    "_initialize",
    "proxy_abi_version_0_2_1",
    "proxy_on_context_create",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_tick",
    "proxy_on_http_call_response",
    "proxy_on_request_headers",
    "proxy_on_response_headers",
    "proxy_on_delete",
    "proxy_on_memory_allocate",
];

/// SDK callbacks whose default (continue, done) is all switchyard wants; four of them would
/// otherwise run on every request with a body.
const NOT_EXPORTED: [&str; 8] = [
    "proxy_on_done",
    "proxy_on_log",
    "proxy_on_request_body",
    "proxy_on_response_body",
    "proxy_on_request_trailers",
    "proxy_on_response_trailers",
    "proxy_on_foreign_function",
    "proxy_on_queue_ready",
];

#[test]
fn module_exports_only_the_callbacks_it_implements() {
    let host = host();
    for name in IMPLEMENTED {
        assert!(host.exports(name), "{name} must be exported");
    }
    let extra: Vec<&str> = NOT_EXPORTED
        .into_iter()
        .filter(|name| host.exports(name))
        .collect();
    assert!(
        extra.is_empty(),
        "exported but unused: {extra:?} (build with plugin/build.sh, which needs binaryen's \
         wasm-metadce)"
    );
}

/// The filter relies on ABI 0.2.1 for routing: Envoy clears its route cache when a module of
/// that ABI changes request headers, so the route's `cluster_header` sees the route header
/// without a `clear_route_cache` call. For a later ABI it does not (Envoy's changelog: "The
/// route cache will not be cleared by default if the wasm extension modified the request
/// headers and the ABI version of wasm extension is larger then 0.2.1"), so an SDK upgrade
/// that changes the ABI must bring that call back (plugin/src/lib.rs).
#[test]
fn module_declares_abi_0_2_1_only() {
    let host = host();
    let abi: Vec<&String> = host
        .export_names()
        .iter()
        .filter(|name| name.starts_with("proxy_abi_version_"))
        .collect();
    assert_eq!(
        abi,
        ["proxy_abi_version_0_2_1"],
        "a new ABI: call the `clear_route_cache` foreign function after setting the route header"
    );
}

#[test]
fn streams_are_freed_without_on_done() {
    // Without `proxy_on_done` the SDK still drops each stream's context in `proxy_on_delete`:
    // many requests leave the module's memory where a few left it.
    let mut host = host_with(&example_policy());
    for i in 0..200 {
        host.request(&chat("acme", &format!("c-{i}"))).unwrap();
    }
    let after_warmup = host.memory_size();
    for i in 0..5_000 {
        host.request(&chat("acme", &format!("c-{i}"))).unwrap();
    }
    assert_eq!(host.memory_size(), after_warmup, "linear memory grew");
}
