//! Hand-written `wasi_snapshot_preview1` stubs: the few WASI calls a Rust `wasm32-wasip1`
//! module imports, without a real WASI implementation (and its build time). Envoy's host
//! likewise offers only a handful of these.
//!
//! - `fd_write` to stdout/stderr is captured in [`HostState`]; other descriptors are `EBADF`.
//! - no arguments, no environment, no preopened directories.
//! - clocks read the host's fixed `time_nanos`; `random_get` is a deterministic generator.
//! - `proc_exit` traps: a filter that exits is broken.

use wasmtime::{bail, Caller, Linker, Result};

use crate::memory::{read, write, write_u32, write_u64};
use crate::state::HostState;

const MODULE: &str = "wasi_snapshot_preview1";
const ERRNO_SUCCESS: u32 = 0;
const ERRNO_BADF: u32 = 8;
const ERRNO_INVAL: u32 = 28;
const ERRNO_NOSYS: u32 = 52;

type C<'a> = Caller<'a, HostState>;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    // No arguments and no environment: both lists are empty.
    for (list, sizes) in [
        ("args_get", "args_sizes_get"),
        ("environ_get", "environ_sizes_get"),
    ] {
        linker.func_wrap(MODULE, list, |_: C<'_>, _: u32, _: u32| ERRNO_SUCCESS)?;
        linker.func_wrap(
            MODULE,
            sizes,
            |mut caller: C<'_>, count: u32, size: u32| -> Result<u32> {
                write_u32(&mut caller, count, 0)?;
                write_u32(&mut caller, size, 0)?;
                Ok(ERRNO_SUCCESS)
            },
        )?;
    }
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut caller: C<'_>, fd: u32, iovs: u32, iovs_len: u32, nwritten: u32| -> Result<u32> {
            if fd != 1 && fd != 2 {
                return Ok(ERRNO_BADF);
            }
            let mut written = Vec::new();
            for i in 0..iovs_len {
                let iov = read(&caller, iovs.wrapping_add(i.wrapping_mul(8)), 8)?;
                let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                written.extend_from_slice(&read(&caller, ptr, len)?);
            }
            let count = u32::try_from(written.len()).unwrap_or(u32::MAX);
            let state = caller.data_mut();
            if fd == 1 {
                state.stdout.extend_from_slice(&written);
            } else {
                state.stderr.extend_from_slice(&written);
            }
            write_u32(&mut caller, nwritten, count)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_read",
        |_: C<'_>, _: u32, _: u32, _: u32, _: u32| ERRNO_BADF,
    )?;
    linker.func_wrap(MODULE, "fd_close", |_: C<'_>, _: u32| ERRNO_BADF)?;
    linker.func_wrap(
        MODULE,
        "fd_seek",
        |_: C<'_>, _: u32, _: i64, _: u32, _: u32| ERRNO_BADF,
    )?;
    linker.func_wrap(MODULE, "fd_fdstat_get", |_: C<'_>, _: u32, _: u32| {
        ERRNO_BADF
    })?;
    // EBADF from fd_prestat_get ends the guest's scan for preopened directories.
    linker.func_wrap(MODULE, "fd_prestat_get", |_: C<'_>, _: u32, _: u32| {
        ERRNO_BADF
    })?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |_: C<'_>, _: u32, _: u32, _: u32| ERRNO_BADF,
    )?;
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut caller: C<'_>, clock: u32, _precision: i64, time: u32| -> Result<u32> {
            if clock > 3 {
                return Ok(ERRNO_INVAL);
            }
            let now = caller.data().time_nanos;
            write_u64(&mut caller, time, now)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut caller: C<'_>, _clock: u32, resolution: u32| -> Result<u32> {
            write_u64(&mut caller, resolution, 1)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut caller: C<'_>, buf: u32, len: u32| -> Result<u32> {
            let mut state = caller.data().random_state;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    // xorshift64: deterministic, so a failing run can be replayed.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            caller.data_mut().random_state = state;
            write(&mut caller, buf, &bytes)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(MODULE, "sched_yield", |_: C<'_>| ERRNO_SUCCESS)?;
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |_: C<'_>, _: u32, _: u32, _: u32, _: u32| ERRNO_NOSYS,
    )?;
    linker.func_wrap(MODULE, "proc_exit", |_: C<'_>, code: u32| -> Result<()> {
        bail!("the module called proc_exit({code})")
    })?;
    Ok(())
}
