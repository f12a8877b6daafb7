//! The `env.proxy_*` host functions of proxy-wasm ABI 0.2.1, as the Rust SDK 0.2.5 imports
//! them, each implemented as plain state in [`HostState`]. Status codes and edge cases follow
//! Envoy's host (proxy-wasm-cpp-host) where the plugin could observe a difference.
//!
//! Every pointer and size is a wasm32 `i32`, taken here as `u32`; metric values are `i64`.

use wasmtime::{Caller, Linker, Result};

use crate::headers::HeaderMap;
use crate::memory::{give, read, read_string, write_u32, write_u64};
use crate::state::{
    status, ForeignCall, HostState, HttpCall, LocalReply, LogEntry, LogLevel, Metric, MetricKind,
    BUFFER_TYPES, MAP_TYPES,
};

type C<'a> = Caller<'a, HostState>;

/// The header map of this `MapType`, if it exists in the current phase.
fn map_index(caller: &C<'_>, map_type: u32) -> Option<usize> {
    let index = usize::try_from(map_type).ok()?;
    (index < MAP_TYPES && caller.data().map_available[index]).then_some(index)
}

fn buffer_index(buffer_type: u32) -> Option<usize> {
    let index = usize::try_from(buffer_type).ok()?;
    (index < BUFFER_TYPES).then_some(index)
}

/// A property path: segments separated by NUL bytes.
fn path_segments(raw: &[u8]) -> Vec<String> {
    raw.split(|&b| b == 0)
        .map(|segment| String::from_utf8_lossy(segment).into_owned())
        .collect()
}

/// Envoy's filter-state key for a property the module sets: `wasm.` + the path.
pub(crate) fn filter_state_key(segments: &[String]) -> String {
    format!("wasm.{}", segments.join("."))
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    logging_and_time(linker)?;
    buffers_and_maps(linker)?;
    properties_and_shared(linker)?;
    streams_and_calls(linker)?;
    metrics(linker)?;
    Ok(())
}

fn logging_and_time(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut caller: C<'_>, level: u32, ptr: u32, size: u32| -> Result<u32> {
            let Some(level) = LogLevel::from_abi(level) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let message = read_string(&caller, ptr, size)?;
            caller.data_mut().logs.push(LogEntry { level, message });
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: C<'_>, return_level: u32| -> Result<u32> {
            let level = caller.data().log_level;
            write_u32(&mut caller, return_level, level)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: C<'_>, return_time: u32| -> Result<u32> {
            caller.data_mut().clock_reads += 1;
            let now = caller.data().time_nanos;
            write_u64(&mut caller, return_time, now)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: C<'_>, period: u32| -> u32 {
            caller.data_mut().tick_period_ms = period;
            status::OK
        },
    )?;
    Ok(())
}

fn buffers_and_maps(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: C<'_>,
         buffer_type: u32,
         start: u32,
         max_size: u32,
         return_data: u32,
         return_size: u32|
         -> Result<u32> {
            let Some(index) = buffer_index(buffer_type) else {
                return Ok(status::NOT_FOUND);
            };
            let buffer = &caller.data().buffers[index];
            let start = start as usize;
            if start > buffer.len() {
                return Ok(status::BAD_ARGUMENT);
            }
            let end = start.saturating_add(max_size as usize).min(buffer.len());
            // Like Envoy: nothing to copy leaves the out-parameters untouched, and the SDK
            // reads the untouched null pointer as "no data".
            if end > start {
                let bytes = buffer[start..end].to_vec();
                give(&mut caller, &bytes, return_data, return_size)?;
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: C<'_>,
         buffer_type: u32,
         start: u32,
         size: u32,
         data: u32,
         data_size: u32|
         -> Result<u32> {
            let Some(index) = buffer_index(buffer_type) else {
                return Ok(status::NOT_FOUND);
            };
            let bytes = read(&caller, data, data_size)?;
            let buffer = &mut caller.data_mut().buffers[index];
            let start = (start as usize).min(buffer.len());
            let end = start.saturating_add(size as usize).min(buffer.len());
            buffer.splice(start..end, bytes);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: C<'_>, map_type: u32, return_data: u32, return_size: u32| -> Result<u32> {
            let Some(index) = map_index(&caller, map_type) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let map = &caller.data().maps[index];
            let mut bytes = if map.is_empty() {
                Vec::new()
            } else {
                map.serialize()
            };
            bytes.truncate(bytes.len().saturating_sub(caller.data().pairs_cut_tail));
            give(&mut caller, &bytes, return_data, return_size)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: C<'_>, map_type: u32, data: u32, size: u32| -> Result<u32> {
            let Some(index) = map_index(&caller, map_type) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let bytes = read(&caller, data, size)?;
            let Some(map) = HeaderMap::deserialize(&bytes) else {
                return Ok(status::BAD_ARGUMENT);
            };
            caller.data_mut().maps[index] = map;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: C<'_>,
         map_type: u32,
         key: u32,
         key_size: u32,
         return_data: u32,
         return_size: u32|
         -> Result<u32> {
            let Some(index) = map_index(&caller, map_type) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let key = read(&caller, key, key_size)?;
            caller
                .data_mut()
                .header_value_reads
                .push((map_type, key.clone()));
            let Some(value) = caller.data().maps[index].get(&key).map(<[u8]>::to_vec) else {
                return Ok(status::NOT_FOUND);
            };
            give(&mut caller, &value, return_data, return_size)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: C<'_>, map_type: u32, key: u32, key_size: u32| -> Result<u32> {
            let Some(index) = map_index(&caller, map_type) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let key = read(&caller, key, key_size)?;
            caller.data_mut().maps[index].remove(&key);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut caller: C<'_>,
         map_type: u32,
         key: u32,
         key_size: u32,
         value: u32,
         value_size: u32|
         -> Result<u32> {
            let Some(index) = map_index(&caller, map_type) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let key = read(&caller, key, key_size)?;
            let value = read(&caller, value, value_size)?;
            caller.data_mut().maps[index].replace(&key, &value);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut caller: C<'_>,
         map_type: u32,
         key: u32,
         key_size: u32,
         value: u32,
         value_size: u32|
         -> Result<u32> {
            let Some(index) = map_index(&caller, map_type) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let key = read(&caller, key, key_size)?;
            let value = read(&caller, value, value_size)?;
            caller.data_mut().maps[index].add(&key, &value);
            Ok(status::OK)
        },
    )?;
    Ok(())
}

fn properties_and_shared(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: C<'_>,
         path: u32,
         path_size: u32,
         return_data: u32,
         return_size: u32|
         -> Result<u32> {
            let segments = path_segments(&read(&caller, path, path_size)?);
            let state = caller.data();
            let value = state
                .properties
                .get(&segments)
                .or_else(|| state.filter_state.get(&filter_state_key(&segments)))
                .cloned();
            let Some(value) = value else {
                return Ok(status::NOT_FOUND);
            };
            give(&mut caller, &value, return_data, return_size)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut caller: C<'_>,
         path: u32,
         path_size: u32,
         value: u32,
         value_size: u32|
         -> Result<u32> {
            let segments = path_segments(&read(&caller, path, path_size)?);
            let value = read(&caller, value, value_size)?;
            caller
                .data_mut()
                .filter_state
                .insert(filter_state_key(&segments), value);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut caller: C<'_>,
         key: u32,
         key_size: u32,
         return_data: u32,
         return_size: u32,
         return_cas: u32|
         -> Result<u32> {
            let key = read_string(&caller, key, key_size)?;
            let Some((value, cas)) = caller.data().shared_data.get(&key) else {
                return Ok(status::NOT_FOUND);
            };
            give(&mut caller, &value, return_data, return_size)?;
            write_u32(&mut caller, return_cas, cas)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |caller: C<'_>,
         key: u32,
         key_size: u32,
         value: u32,
         value_size: u32,
         cas: u32|
         -> Result<u32> {
            let key = read_string(&caller, key, key_size)?;
            let value = read(&caller, value, value_size)?;
            Ok(caller.data().shared_data.set(&key, value, cas))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut caller: C<'_>, name: u32, name_size: u32, return_id: u32| -> Result<u32> {
            let name = read_string(&caller, name, name_size)?;
            let queues = &mut caller.data_mut().shared_queues;
            let index = match queues.iter().position(|(n, _)| *n == name) {
                Some(index) => index,
                None => {
                    queues.push((name, Default::default()));
                    queues.len() - 1
                }
            };
            write_u32(&mut caller, return_id, id_of(index))?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut caller: C<'_>,
         _vm_id: u32,
         _vm_id_size: u32,
         name: u32,
         name_size: u32,
         return_id: u32|
         -> Result<u32> {
            let name = read_string(&caller, name, name_size)?;
            let Some(index) = caller
                .data()
                .shared_queues
                .iter()
                .position(|(n, _)| *n == name)
            else {
                return Ok(status::NOT_FOUND);
            };
            write_u32(&mut caller, return_id, id_of(index))?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut caller: C<'_>, id: u32, return_data: u32, return_size: u32| -> Result<u32> {
            let Some(queue) =
                index_of(id).and_then(|index| caller.data_mut().shared_queues.get_mut(index))
            else {
                return Ok(status::NOT_FOUND);
            };
            let Some(item) = queue.1.pop_front() else {
                return Ok(status::EMPTY);
            };
            give(&mut caller, &item, return_data, return_size)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut caller: C<'_>, id: u32, data: u32, size: u32| -> Result<u32> {
            let item = read(&caller, data, size)?;
            let Some(queue) =
                index_of(id).and_then(|index| caller.data_mut().shared_queues.get_mut(index))
            else {
                return Ok(status::NOT_FOUND);
            };
            queue.1.push_back(item);
            Ok(status::OK)
        },
    )?;
    Ok(())
}

/// Ids handed to the guest are index + 1, so 0 is never a valid id.
fn id_of(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

fn index_of(id: u32) -> Option<usize> {
    usize::try_from(id).ok()?.checked_sub(1)
}

fn streams_and_calls(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut caller: C<'_>, stream_type: u32| -> u32 {
            caller.data_mut().continued_streams.push(stream_type);
            status::OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut caller: C<'_>, stream_type: u32| -> u32 {
            caller.data_mut().closed_streams.push(stream_type);
            status::OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: C<'_>,
         status_code: u32,
         details: u32,
         details_size: u32,
         body: u32,
         body_size: u32,
         headers: u32,
         headers_size: u32,
         grpc_status: i32|
         -> Result<u32> {
            let details = read(&caller, details, details_size)?;
            let body = read(&caller, body, body_size)?;
            let Some(headers) = HeaderMap::deserialize(&read(&caller, headers, headers_size)?)
            else {
                return Ok(status::BAD_ARGUMENT);
            };
            caller.data_mut().local_reply = Some(LocalReply {
                status: status_code,
                details,
                headers,
                body,
                grpc_status,
            });
            Ok(status::OK)
        },
    )?;
    // Outgoing calls (remote policy sources): recorded, answered later by the test through
    // `FakeHost::respond_http_call`. A cluster the host does not know gets `BadArgument`, as in
    // Envoy; so does a call without `:method`, `:path` or `:authority`.
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: C<'_>,
         cluster: u32,
         cluster_size: u32,
         headers: u32,
         headers_size: u32,
         body: u32,
         body_size: u32,
         _trailers: u32,
         _trailers_size: u32,
         timeout_ms: u32,
         return_token: u32|
         -> Result<u32> {
            let cluster = read_string(&caller, cluster, cluster_size)?;
            let Some(headers) = HeaderMap::deserialize(&read(&caller, headers, headers_size)?)
            else {
                return Ok(status::BAD_ARGUMENT);
            };
            let body = read(&caller, body, body_size)?;
            let state = caller.data();
            if !state.http_call_clusters.contains(&cluster)
                || [":method", ":path", ":authority"]
                    .iter()
                    .any(|name| headers.get(name.as_bytes()).is_none())
            {
                return Ok(status::BAD_ARGUMENT);
            }
            let state = caller.data_mut();
            let token = state.next_http_token;
            state.next_http_token += 1;
            let call = HttpCall {
                token,
                cluster,
                headers,
                body,
                timeout_ms,
            };
            state.http_call_log.push(call.clone());
            state.http_calls.push(call);
            write_u32(&mut caller, return_token, token)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |_: C<'_>,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32|
         -> u32 { status::BAD_ARGUMENT },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |_: C<'_>, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32| -> u32 {
            status::BAD_ARGUMENT
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |_: C<'_>, _: u32, _: u32, _: u32, _: u32| -> u32 { status::NOT_FOUND },
    )?;
    linker.func_wrap("env", "proxy_grpc_cancel", |_: C<'_>, _: u32| -> u32 {
        status::NOT_FOUND
    })?;
    linker.func_wrap("env", "proxy_grpc_close", |_: C<'_>, _: u32| -> u32 {
        status::NOT_FOUND
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut caller: C<'_>, return_code: u32, return_data: u32, return_size: u32| -> Result<u32> {
            write_u32(&mut caller, return_code, 0)?;
            give(&mut caller, &[], return_data, return_size)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut caller: C<'_>, context_id: u32| -> u32 {
            caller.data_mut().effective_context = context_id;
            status::OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut caller: C<'_>,
         name: u32,
         name_size: u32,
         arguments: u32,
         arguments_size: u32,
         return_data: u32,
         return_size: u32|
         -> Result<u32> {
            let name = read_string(&caller, name, name_size)?;
            let arguments = read(&caller, arguments, arguments_size)?;
            let known = caller.data().foreign_functions.contains(&name);
            caller
                .data_mut()
                .foreign_calls
                .push(ForeignCall { name, arguments });
            if !known {
                return Ok(status::NOT_FOUND);
            }
            give(&mut caller, &[], return_data, return_size)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap("env", "proxy_done", |mut caller: C<'_>| -> u32 {
        caller.data_mut().done_calls += 1;
        status::OK
    })?;
    Ok(())
}

fn metrics(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: C<'_>, kind: u32, name: u32, name_size: u32, return_id: u32| -> Result<u32> {
            let Some(kind) = MetricKind::from_abi(kind) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let name = read_string(&caller, name, name_size)?;
            caller.data_mut().metric_definitions += 1;
            let metrics = &mut caller.data_mut().metrics;
            let index = match metrics.iter().position(|m| m.name == name) {
                Some(index) if metrics[index].kind == kind => index,
                Some(_) => return Ok(status::BAD_ARGUMENT),
                None => {
                    metrics.push(Metric {
                        name,
                        kind,
                        value: 0,
                    });
                    metrics.len() - 1
                }
            };
            write_u32(&mut caller, return_id, id_of(index))?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: C<'_>, id: u32, return_value: u32| -> Result<u32> {
            let Some(metric) = caller.data_mut().metric_mut(id) else {
                return Ok(status::NOT_FOUND);
            };
            let value = u64::try_from(metric.value).unwrap_or(0);
            write_u64(&mut caller, return_value, value)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut caller: C<'_>, id: u32, value: i64| -> u32 {
            let Some(metric) = caller.data_mut().metric_mut(id) else {
                return status::NOT_FOUND;
            };
            match metric.kind {
                // Envoy raises a counter to the recorded value, never lowers it.
                MetricKind::Counter => metric.value = metric.value.max(value),
                MetricKind::Gauge | MetricKind::Histogram => metric.value = value,
            }
            status::OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut caller: C<'_>, id: u32, offset: i64| -> u32 {
            let Some(metric) = caller.data_mut().metric_mut(id) else {
                return status::NOT_FOUND;
            };
            match metric.kind {
                MetricKind::Counter if offset < 0 => status::BAD_ARGUMENT,
                MetricKind::Counter | MetricKind::Gauge => {
                    metric.value = metric.value.saturating_add(offset);
                    status::OK
                }
                MetricKind::Histogram => status::BAD_ARGUMENT,
            }
        },
    )?;
    Ok(())
}
