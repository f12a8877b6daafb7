//! The floor of any proxy-wasm routing filter, for `bench/run.sh` (case b).
//!
//! Per request it does the least a routing filter can do: read one request header
//! (`x-tenant-id`), set the route header (`x-switchyard-cluster`) and ask Envoy to re-pick the
//! route (foreign function `clear_route_cache`), exactly the host calls switchyard makes to
//! route, and nothing else (no policy, no exposure headers, no metrics, no filter state).
//! Whatever switchyard costs on top of this is switchyard's own cost.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

const TENANT_HEADER: &str = "x-tenant-id";
const ROUTE_HEADER: &str = "x-switchyard-cluster";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot) });
}}

struct FloorRoot;

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor))
    }
}

struct Floor;

impl Context for Floor {}

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
        let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        Action::Continue
    }
}
