//! The proxy-wasm host calls this filter makes without the SDK's wrappers, because the
//! wrappers in `proxy_wasm::hostcalls` 0.2.5 would panic (and so trap the VM) on input a
//! client controls or on a status Envoy can return:
//!
//! - `get_map` decodes every header name and value with `String::from_utf8` and unwraps it;
//!   header values may be any bytes (obs-text), so a client could crash the filter with one
//!   `\xff`. Here the map comes back as raw bytes and [`crate::headers`] decides.
//! - `remove_map_value` only takes `&str` names, so a header whose name is not UTF-8 could not
//!   be removed at all.
//! - `set_property` panics on any status but `Ok`; Envoy answers `NotFound` or `BadArgument`
//!   when filter state cannot be written (no stream info, a read-only entry of that name).
//! - `add_map_value` and `set_map_value` panic on any status but `Ok` too; Envoy answers
//!   `BadArgument` for a map that does not exist in the current phase. switchyard's values are
//!   printable ASCII, but a header write is not worth a trap.
//! - `send_http_response` sends no response code details, so an access log could not tell
//!   switchyard's consent reject from any other local reply; [`send_local_response`] does.
//!
//! Everything else goes through `proxy_wasm::hostcalls`, whose panicking branches are for
//! statuses Envoy does not return for those calls.

use std::ptr::null_mut;

/// `proxy_wasm::types::MapType` values.
pub const REQUEST_HEADERS: u32 = 0;
/// `MapType::HttpResponseHeaders`.
pub const RESPONSE_HEADERS: u32 = 2;

const STATUS_OK: u32 = 0;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "proxy_get_header_map_pairs"]
    fn raw_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    #[link_name = "proxy_get_header_map_value"]
    fn raw_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    #[link_name = "proxy_add_header_map_value"]
    fn raw_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    #[link_name = "proxy_replace_header_map_value"]
    fn raw_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    #[link_name = "proxy_remove_header_map_value"]
    fn raw_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    #[link_name = "proxy_set_property"]
    fn raw_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    #[link_name = "proxy_send_local_response"]
    fn raw_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

// Off wasm (unit tests, `cargo clippy` on the host) there is no proxy: every call fails.
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_get_header_map_pairs(_: u32, _: *mut *mut u8, _: *mut usize) -> u32 {
    10
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_get_header_map_value(
    _: u32,
    _: *const u8,
    _: usize,
    _: *mut *mut u8,
    _: *mut usize,
) -> u32 {
    10
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_add_header_map_value(_: u32, _: *const u8, _: usize, _: *const u8, _: usize) -> u32 {
    10
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_replace_header_map_value(
    _: u32,
    _: *const u8,
    _: usize,
    _: *const u8,
    _: usize,
) -> u32 {
    10
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_remove_header_map_value(_: u32, _: *const u8, _: usize) -> u32 {
    10
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_set_property(_: *const u8, _: usize, _: *const u8, _: usize) -> u32 {
    10
}
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
unsafe fn raw_send_local_response(
    _: u32,
    _: *const u8,
    _: usize,
    _: *const u8,
    _: usize,
    _: *const u8,
    _: usize,
    _: i32,
) -> u32 {
    10
}

/// A failed host call: the status the host answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

/// The serialized header map (see [`crate::headers::entries`]), as raw bytes.
pub fn get_header_map_bytes(map_type: u32) -> Result<Vec<u8>, HostStatus> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and size into our two out-parameters. The pointer is
    // a buffer the host allocated through our `proxy_on_memory_allocate`, which the SDK
    // implements as a `Box<[u8]>` of exactly `size` bytes, so we own it as a Vec of that
    // capacity.
    unsafe {
        let status = raw_get_header_map_pairs(map_type, &mut data, &mut size);
        if status != STATUS_OK {
            return Err(HostStatus(status));
        }
        if data.is_null() {
            return Ok(Vec::new());
        }
        Ok(Vec::from_raw_parts(data, size, size))
    }
}

/// One header's value as raw bytes (`None` when absent): the SDK's version would panic on a
/// value that is not UTF-8, and response headers come from upstreams.
pub fn get_header_value(map_type: u32, name: &str) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `get_header_map_bytes`: the host returns a buffer it allocated through our
    // allocator, of exactly `size` bytes, which we take ownership of.
    unsafe {
        let status =
            raw_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size);
        if status != STATUS_OK || data.is_null() {
            return None;
        }
        Some(Vec::from_raw_parts(data, size, size))
    }
}

fn status(code: u32) -> Result<(), HostStatus> {
    if code == STATUS_OK {
        Ok(())
    } else {
        Err(HostStatus(code))
    }
}

/// Writes a header: `replace` replaces every entry of this name with one (or adds it);
/// otherwise the entry is appended, whether or not the map has one of this name.
pub fn write_header(
    map_type: u32,
    name: &str,
    value: &str,
    replace: bool,
) -> Result<(), HostStatus> {
    let (key, key_size) = (name.as_ptr(), name.len());
    let (data, size) = (value.as_ptr(), value.len());
    // SAFETY: the host only reads the two buffers, for the lengths given.
    status(unsafe {
        if replace {
            raw_replace_header_map_value(map_type, key, key_size, data, size)
        } else {
            raw_add_header_map_value(map_type, key, key_size, data, size)
        }
    })
}

/// Removes every header of this name (raw bytes: the name need not be UTF-8).
pub fn remove_header(map_type: u32, name: &[u8]) -> Result<(), HostStatus> {
    // SAFETY: the host only reads `name.len()` bytes at `name.as_ptr()`.
    status(unsafe { raw_remove_header_map_value(map_type, name.as_ptr(), name.len()) })
}

/// Sets a one-segment property (Envoy stores it as filter state `wasm.<name>`).
pub fn set_property(name: &str, value: &[u8]) -> Result<(), HostStatus> {
    // SAFETY: the host only reads the two buffers, for the lengths given.
    status(unsafe { raw_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Sends a local reply. `details` is Envoy's response code details
/// (`%RESPONSE_CODE_DETAILS%` in an access log; no whitespace); `headers` is a serialized map
/// ([`crate::headers::serialize_map`]).
pub fn send_local_response(
    status_code: u32,
    details: &str,
    headers: &[u8],
    body: &[u8],
) -> Result<(), HostStatus> {
    // SAFETY: the host only reads the three buffers, for the lengths given. A grpc_status of
    // -1 means "not gRPC".
    status(unsafe {
        raw_send_local_response(
            status_code,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}
