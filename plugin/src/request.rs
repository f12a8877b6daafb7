//! Turns what Envoy hands the filter (the request header map and the `source.address`
//! property) into the engine's [`Request`], the same shape `switchyard eval` reads, so the
//! filter and the command answer alike.

use std::borrow::Cow;

use switchyard_policy::Request;

use crate::headers::RawHeader;

/// Builds the engine's request from raw headers (owned headers already removed), keeping only
/// the headers the engine will read: `wanted` sees each lower-cased name as bytes and answers
/// with the name as text (the policy's own copy), so no name is decoded. Nothing is copied:
/// the request borrows the host's header buffer and the policy's names.
///
/// Pseudo-headers fill `method`, `path` and `host` (the first of each wins; `host` falls back
/// to a `host` header, which Envoy normally folds into `:authority`); the other
/// pseudo-headers (`:scheme`, ...) are not request attributes. Bytes that are not UTF-8 in
/// those three are replaced by U+FFFD, so a stray byte in the query string cannot take the
/// path out of a flag's `path_prefix` scope. A header whose name or value is not UTF-8 is left
/// out (see [`crate::headers`]): a mangled tenant id must not match someone else's rule.
pub fn build<'m>(
    headers: &'m [RawHeader<'_>],
    wanted: impl Fn(&'m [u8]) -> Option<&'m str>,
) -> Request<'m> {
    let mut request = Request {
        headers: Vec::with_capacity(8),
        ..Request::default()
    };
    let mut host_header = None;
    for (name, value) in headers {
        match name.as_ref() {
            b":method" => first(&mut request.method, value),
            b":path" => first(&mut request.path, value),
            b":authority" => first(&mut request.host, value),
            [b':', ..] => {}
            name => {
                if name == b"host" && host_header.is_none() {
                    host_header = Some(*value);
                }
                // Values are checked for UTF-8 only when used: most are not.
                if let Some(name) = wanted(name) {
                    if let Ok(value) = std::str::from_utf8(value) {
                        request.headers.push((name.into(), value.into()));
                    }
                }
            }
        }
    }
    if request.host.is_empty() {
        if let Some(host) = host_header {
            first(&mut request.host, host);
        }
    }
    request
}

/// Fills an empty pseudo-header slot; text that is not UTF-8 is decoded with U+FFFD.
fn first<'m>(slot: &mut Cow<'m, str>, value: &'m [u8]) {
    if slot.is_empty() {
        // The strict check first: it is several times cheaper than the lossy decoder's chunk
        // walk for the valid text nearly every request has.
        *slot = match std::str::from_utf8(value) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value),
        };
    }
}

/// The client IP from Envoy's `source.address` (`1.2.3.4:5678`, `[::1]:5678`), without the
/// port. An address that is not UTF-8 is absent; one with no recognisable port (a bare IPv6
/// address, a pipe path) is kept as it is, and the engine's `cidr` simply won't match it.
pub fn source_ip(address: &[u8]) -> &str {
    let Ok(address) = std::str::from_utf8(address) else {
        return "";
    };
    switchyard_policy::ip_without_port(address.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wants every header whose name is text.
    fn every_name(name: &[u8]) -> Option<&str> {
        std::str::from_utf8(name).ok()
    }

    fn raw(pairs: &[(&'static str, &'static [u8])]) -> Vec<RawHeader<'static>> {
        pairs
            .iter()
            .map(|(n, v)| (Cow::Borrowed(n.as_bytes()), *v))
            .collect()
    }

    #[test]
    fn pseudo_headers_fill_the_request() {
        let headers = raw(&[
            (":method", b"POST"),
            (":path", b"/v1/chat?x=1"),
            (":authority", b"api.example"),
            (":scheme", b"https"),
            ("x-tenant-id", b"acme"),
            ("x-bad", b"\xff"),
            (":path", b"/second"),
        ]);
        let request = build(&headers, every_name);
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/chat?x=1");
        assert_eq!(request.host, "api.example");
        assert_eq!(request.source_ip, "", "filled only when a flag needs it");
        assert_eq!(source_ip(b"10.0.0.1:443"), "10.0.0.1");
        assert_eq!(source_ip(b"[::1]:443"), "::1");
        assert_eq!(
            request.headers,
            vec![(Cow::Borrowed("x-tenant-id"), Cow::Borrowed("acme"))]
        );
    }

    #[test]
    fn a_stray_byte_keeps_the_path_and_host() {
        let headers = raw(&[
            (":path", b"/v1/agent/run?x=\xff"),
            (":path", b"/second"),
            ("host", b"api\xfe.example"),
            ("x-tenant-id", b"\xffacme"),
        ]);
        let request = build(&headers, every_name);
        assert_eq!(
            request.path, "/v1/agent/run?x=\u{fffd}",
            "the first :path, decoded"
        );
        assert!(request.path_only().starts_with("/v1/agent/"));
        assert_eq!(request.host, "api\u{fffd}.example");
        assert!(
            request.headers.is_empty(),
            "a header value is never guessed"
        );
    }
}
