//! Drives requests through a proxy-wasm filter in the host tests' fake host (wasmtime), for
//! bench/instructions.sh, which runs this under `valgrind --tool=callgrind --instr-atstart=no`:
//! the driver switches callgrind's instrumentation on just before the measured requests and
//! off right after (Valgrind client requests, a no-op when not under Valgrind), so loading and
//! compiling the module, configuring the filter and the warm-up requests are neither counted
//! nor slowed down by instrumentation.
//!
//!     drive WASM CONFIG_FILE|- MIX_FILE N [WARMUP]
//!
//! MIX_FILE: one request a line, tab-separated header name, value, name, value, ...
//! Every request is POST /v1/chat/completions, authority api.example, source 10.1.2.3:5678.

use std::process::ExitCode;

use switchyard_host_tests::{FakeHost, HttpRequest};

/// Callgrind client requests (valgrind/callgrind.h): VG_USERREQ_TOOL_BASE('C','T') + n.
const CALLGRIND_START_INSTRUMENTATION: u64 = 0x4354_0000 + 4;
const CALLGRIND_STOP_INSTRUMENTATION: u64 = 0x4354_0000 + 5;

/// A Valgrind client request (valgrind.h's amd64 magic sequence: rotates of rdi by 128 bits
/// in all, i.e. a no-op on a real CPU, then `xchg rbx, rbx`).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn valgrind_request(code: u64) -> u64 {
    let args: [u64; 6] = [code, 0, 0, 0, 0, 0];
    let mut result: u64 = 0;
    // SAFETY: the sequence only rotates rdi (declared clobbered) and exchanges rbx with itself;
    // under Valgrind it reads `args` (6 words) and writes rdx.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3", "rol rdi, 13", "rol rdi, 61", "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") result,
            out("rdi") _,
        );
    }
    std::hint::black_box(&args);
    result
}

#[cfg(not(target_arch = "x86_64"))]
fn valgrind_request(_code: u64) -> u64 {
    0
}

#[inline(never)]
fn measured_requests(host: &mut FakeHost, requests: &[HttpRequest], n: usize) -> usize {
    valgrind_request(CALLGRIND_START_INSTRUMENTATION);
    let forwarded = drive_requests(host, requests, n);
    valgrind_request(CALLGRIND_STOP_INSTRUMENTATION);
    forwarded
}

#[inline(never)]
fn drive_requests(host: &mut FakeHost, requests: &[HttpRequest], n: usize) -> usize {
    let mut forwarded = 0;
    for i in 0..n {
        match host.request(&requests[i % requests.len()]) {
            Ok(result) => {
                if result.upstream().is_some() {
                    forwarded += 1;
                }
            }
            Err(e) => {
                eprintln!("request {i}: {e:?}");
                return forwarded;
            }
        }
    }
    forwarded
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: drive WASM CONFIG_FILE|- MIX_FILE N [WARMUP]".into());
    }
    let config = if args[2] == "-" {
        Vec::new()
    } else {
        std::fs::read(&args[2]).map_err(|e| format!("{}: {e}", args[2]))?
    };
    let mix = std::fs::read_to_string(&args[3]).map_err(|e| format!("{}: {e}", args[3]))?;
    let n: usize = args[4].parse().map_err(|e| format!("N: {e}"))?;
    let warmup: usize = match args.get(5) {
        Some(w) => w.parse().map_err(|e| format!("WARMUP: {e}"))?,
        None => 200,
    };
    let requests: Vec<HttpRequest> = mix
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let mut request = HttpRequest::new("POST", "/v1/chat/completions", "api.example")
                .source_address("10.1.2.3:5678");
            request.end_of_stream = false;
            for pair in fields.chunks(2) {
                if let [name, value] = pair {
                    request = request.header(name, value);
                }
            }
            request
        })
        .collect();
    if requests.is_empty() {
        return Err("empty request mix".into());
    }
    let mut host = FakeHost::load(&args[1]).map_err(|e| format!("load {}: {e:?}", args[1]))?;
    if !host.configure(&config).map_err(|e| format!("configure: {e:?}"))? {
        return Err("the filter rejected its configuration".into());
    }
    let warm = measured_warmup(&mut host, &requests, warmup);
    let forwarded = measured_requests(&mut host, &requests, n);
    if let Some(broken) = host.broken() {
        return Err(format!("the host is broken: {broken}"));
    }
    println!("requests {n} forwarded {forwarded} warmup {warmup} ({warm} forwarded)");
    Ok(())
}

/// Same as `measured_requests`, under another name so that it is not counted.
#[inline(never)]
fn measured_warmup(host: &mut FakeHost, requests: &[HttpRequest], n: usize) -> usize {
    let mut forwarded = 0;
    for request in requests.iter().cycle().take(n) {
        if let Ok(result) = host.request(request) {
            if result.upstream().is_some() {
                forwarded += 1;
            }
        }
    }
    forwarded
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drive: {e}");
            ExitCode::FAILURE
        }
    }
}
