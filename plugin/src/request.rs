//! Turns what Envoy hands the filter (the request header map and the `source.address`
//! property) into the engine's [`Request`], the same shape `switchyard eval` reads, so the
//! filter and the command answer alike.

use switchyard_policy::Request;

use crate::headers::RawHeader;

/// Builds the engine's request from raw headers (owned headers already removed), copying only
/// the headers `wanted` says the engine will read (every other header costs two allocations
/// per request for nothing).
///
/// Pseudo-headers fill `method`, `path` and `host` (the first of each wins; `host` falls back
/// to a `host` header, which Envoy normally folds into `:authority`); the other
/// pseudo-headers (`:scheme`, ...) are not request attributes. A header whose name or value is
/// not UTF-8 is left out (see [`crate::headers`]).
pub fn build(
    headers: &[RawHeader],
    source_address: Option<&[u8]>,
    wanted: impl Fn(&str) -> bool,
) -> Request {
    let mut request = Request {
        source_ip: source_address.map(source_ip).unwrap_or_default(),
        headers: Vec::with_capacity(headers.len()),
        ..Request::default()
    };
    let mut host_header = None;
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
            continue;
        };
        match name {
            ":method" => first(&mut request.method, value),
            ":path" => first(&mut request.path, value),
            ":authority" => first(&mut request.host, value),
            _ if name.starts_with(':') => {}
            _ => {
                if name == "host" && host_header.is_none() {
                    host_header = Some(value);
                }
                if wanted(name) {
                    request.headers.push((name.to_string(), value.to_string()));
                }
            }
        }
    }
    if request.host.is_empty() {
        if let Some(host) = host_header {
            request.host = host.to_string();
        }
    }
    request
}

fn first(slot: &mut String, value: &str) {
    if slot.is_empty() {
        *slot = value.to_string();
    }
}

/// The client IP from Envoy's `source.address` (`1.2.3.4:5678`, `[::1]:5678`), without the
/// port. An address that is not UTF-8 is absent; one with no recognisable port (a bare IPv6
/// address, a pipe path) is kept as it is, and the engine's `cidr` simply won't match it.
pub fn source_ip(address: &[u8]) -> String {
    let Ok(address) = std::str::from_utf8(address) else {
        return String::new();
    };
    switchyard_policy::ip_without_port(address.trim()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_headers_fill_the_request() {
        let h = |n: &str, v: &[u8]| (n.as_bytes().to_vec(), v.to_vec());
        let headers = vec![
            h(":method", b"POST"),
            h(":path", b"/v1/chat?x=1"),
            h(":authority", b"api.example"),
            h(":scheme", b"https"),
            h("x-tenant-id", b"acme"),
            h("x-bad", b"\xff"),
            h(":path", b"/second"),
        ];
        let request = build(&headers, Some(b"10.0.0.1:443"), |_| true);
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/chat?x=1");
        assert_eq!(request.host, "api.example");
        assert_eq!(request.source_ip, "10.0.0.1");
        assert_eq!(
            request.headers,
            vec![("x-tenant-id".to_string(), "acme".to_string())]
        );
    }
}
