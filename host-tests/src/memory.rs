//! Moving bytes between the host and the guest's linear memory.
//!
//! The host never writes into memory the guest did not hand it: data going *to* the guest is
//! placed in a buffer the guest allocates with its exported `proxy_on_memory_allocate` (or
//! `malloc`), and the guest frees it (the Rust SDK takes ownership with `Vec::from_raw_parts`).
//! A pointer the guest passes that falls outside its memory is a bug in the guest: the host
//! traps, so a test sees it at once.

use wasmtime::{bail, format_err, Caller, Memory, Result};

use crate::state::HostState;

fn memory(caller: &Caller<'_, HostState>) -> Result<Memory> {
    caller
        .data()
        .memory
        .ok_or_else(|| format_err!("the module exports no memory named `memory`"))
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub(crate) fn read(caller: &Caller<'_, HostState>, ptr: u32, len: u32) -> Result<Vec<u8>> {
    let memory = memory(caller)?;
    let data = memory.data(caller);
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or_else(|| format_err!("guest buffer {ptr}+{len} overflows"))?;
    match data.get(start..end) {
        Some(bytes) => Ok(bytes.to_vec()),
        None => bail!(
            "guest buffer {ptr}+{len} lies outside its memory ({} bytes)",
            data.len()
        ),
    }
}

/// Reads a guest string; proxy-wasm strings are not guaranteed UTF-8, so decode lossily.
pub(crate) fn read_string(caller: &Caller<'_, HostState>, ptr: u32, len: u32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

/// Writes bytes at a guest address the guest gave us (an out-parameter) or allocated for us.
pub(crate) fn write(caller: &mut Caller<'_, HostState>, ptr: u32, bytes: &[u8]) -> Result<()> {
    let memory = memory(caller)?;
    memory
        .write(&mut *caller, ptr as usize, bytes)
        .map_err(|_| {
            format_err!(
                "guest out-parameter {ptr}+{} lies outside its memory",
                bytes.len()
            )
        })
}

pub(crate) fn write_u32(caller: &mut Caller<'_, HostState>, ptr: u32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Caller<'_, HostState>, ptr: u32, value: u64) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the guest the way proxy-wasm hosts do: allocate in the guest, copy, and
/// store the pointer and size in the guest's two out-parameters. Empty data is passed as a
/// null pointer and size 0 without allocating (as Envoy's host does; the SDK maps a null
/// pointer to an empty value).
pub(crate) fn give(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    return_data: u32,
    return_size: u32,
) -> Result<()> {
    if bytes.is_empty() {
        write_u32(caller, return_data, 0)?;
        return write_u32(caller, return_size, 0);
    }
    let size = u32::try_from(bytes.len())
        .map_err(|_| format_err!("{} bytes do not fit a wasm32 buffer", bytes.len()))?;
    let allocate = caller
        .data()
        .allocate
        .ok_or_else(|| format_err!("the module exports no proxy_on_memory_allocate or malloc"))?;
    let ptr = allocate
        .typed::<u32, u32>(&*caller)?
        .call(&mut *caller, size)?;
    if ptr == 0 {
        bail!("the guest failed to allocate {size} bytes");
    }
    write(caller, ptr, bytes)?;
    write_u32(caller, return_data, ptr)?;
    write_u32(caller, return_size, size)
}
