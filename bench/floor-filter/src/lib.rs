//! The floor of any proxy-wasm routing filter, for `bench/run.sh` (case b).
//!
//! Per request it does the least a routing filter can do: read one request header
//! (`x-tenant-id`) and set the route header (`x-switchyard-cluster`), exactly the host calls
//! switchyard makes to route, and nothing else (no policy, no exposure headers, no metrics, no
//! filter state). Envoy re-picks the route by itself because a module of ABI 0.2.1 changed
//! request headers, so neither filter calls the `clear_route_cache` foreign function.
//! Whatever switchyard costs on top of this is switchyard's own cost.
//!
//! To price host calls (`bench/run.sh --floor-config`), the plugin configuration may ask for
//! extra calls per request, as space-separated `NAME=COUNT`: `map` (read the whole request
//! header map), `header` (set an extra request header), `prop` (write filter state), `time`
//! (read the clock), `counter` (increment a counter), `histogram` (record a histogram value),
//! `status` (read the response `:status`), `code` (read the `response.code` property), `reroute` (call the `clear_route_cache` foreign
//! function). Empty: the floor as above.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

const TENANT_HEADER: &str = "x-tenant-id";
const ROUTE_HEADER: &str = "x-switchyard-cluster";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot::default()) });
}}

/// Extra host calls per request (all zero for the floor).
#[derive(Clone, Copy, Default)]
struct Extra {
    map: u32,
    header: u32,
    prop: u32,
    time: u32,
    counter: u32,
    histogram: u32,
    status: u32,
    code: u32,
    reroute: u32,
    counter_id: u32,
    histogram_id: u32,
}

#[derive(Default)]
struct FloorRoot {
    extra: Extra,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        let mut extra = Extra::default();
        for item in config.split_whitespace() {
            let Some((name, count)) = item.split_once('=') else {
                return false;
            };
            let Ok(count) = count.parse::<u32>() else {
                return false;
            };
            let slot = match name {
                "map" => &mut extra.map,
                "header" => &mut extra.header,
                "prop" => &mut extra.prop,
                "time" => &mut extra.time,
                "counter" => &mut extra.counter,
                "histogram" => &mut extra.histogram,
                "status" => &mut extra.status,
                "code" => &mut extra.code,
                "reroute" => &mut extra.reroute,
                _ => return false,
            };
            *slot = count;
        }
        if extra.counter > 0 {
            extra.counter_id =
                hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, "floor.extra")
                    .unwrap_or(0);
        }
        if extra.histogram > 0 {
            extra.histogram_id = hostcalls::define_metric(
                proxy_wasm::types::MetricType::Histogram,
                "floor.extra_ms",
            )
            .unwrap_or(0);
        }
        self.extra = extra;
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor { extra: self.extra }))
    }
}

struct Floor {
    extra: Extra,
}

impl Context for Floor {}

const EXTRA_NAMES: [&str; 8] = [
    "x-floor-extra-0",
    "x-floor-extra-1",
    "x-floor-extra-2",
    "x-floor-extra-3",
    "x-floor-extra-4",
    "x-floor-extra-5",
    "x-floor-extra-6",
    "x-floor-extra-7",
];

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let tenant = hostcalls::get_map_value(MapType::HttpRequestHeaders, TENANT_HEADER)
            .ok()
            .flatten();
        // The one "decision": the opted-out tenant goes to the non-AI route.
        let cluster = match tenant.as_deref() {
            Some("globex") => "support_rules",
            _ => "support_model_a",
        };
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, ROUTE_HEADER, Some(cluster));
        let e = self.extra;
        for _ in 0..e.reroute {
            let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        }
        for _ in 0..e.map {
            let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
        }
        for i in 0..e.header {
            let name = EXTRA_NAMES[i as usize % EXTRA_NAMES.len()];
            let _ = hostcalls::set_map_value(
                MapType::HttpRequestHeaders,
                name,
                Some("value;of=some_length"),
            );
        }
        for i in 0..e.prop {
            let name = EXTRA_NAMES[i as usize % EXTRA_NAMES.len()];
            let _ = hostcalls::set_property(
                vec![name],
                Some(b"{\"a filter state value\":\"of some length, like an event\"}"),
            );
        }
        for _ in 0..e.time {
            let _ = hostcalls::get_current_time();
        }
        for _ in 0..e.counter {
            let _ = hostcalls::increment_metric(e.counter_id, 1);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let e = self.extra;
        for _ in 0..e.status {
            let _ = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status");
        }
        for _ in 0..e.code {
            let _ = hostcalls::get_property(vec!["response", "code"]);
        }
        for _ in 0..e.histogram {
            let _ = hostcalls::record_metric(e.histogram_id, 3);
        }
        Action::Continue
    }
}
