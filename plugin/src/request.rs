//! Turns what Envoy hands the filter (the request header map and the `source.address`
//! property) into the engine's [`Request`], the same shape `switchyard eval` reads, so the
//! filter and the command answer alike.

use std::borrow::Cow;

use switchyard_policy::Request;

use crate::words;

/// What the filter does with a request header, by its lower-cased name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRole<'p> {
    /// Read it, under this name (the policy's own copy, so no name is decoded).
    Read(&'p str),
    /// switchyard owns it: a client's copy must be removed.
    Owned,
    /// Neither: pass it upstream untouched.
    Other,
}

/// The request as the engine sees it, and whether the client sent headers switchyard owns.
#[derive(Debug)]
pub struct Built<'m> {
    pub request: Request<'m>,
    pub owned_seen: bool,
}

/// Builds the engine's request from the host's map entries in one walk, keeping only the
/// headers `role` says to read, and noting any header switchyard owns (the caller then removes
/// them; an owned name is never read). Nothing is copied: the request borrows the host's
/// header buffer and the policy's names.
///
/// Pseudo-headers fill `method`, `path` and `host` (the first of each wins; `host` falls back
/// to a `host` header, which Envoy normally folds into `:authority`); the other
/// pseudo-headers (`:scheme`, ...) are not request attributes. Bytes that are not UTF-8 in
/// those three are replaced by U+FFFD, so a stray byte in the query string cannot take the
/// path out of a flag's `path_prefix` scope. A header whose name or value is not UTF-8 is left
/// out (see [`crate::headers`]): a mangled tenant id must not match someone else's rule, nor
/// may a later copy of the same header be read in its place.
///
/// The headers go into `headers` (cleared first), so the caller can hand over a list it keeps
/// between requests ([`crate::scratch`]).
pub fn build<'m>(
    entries: impl Iterator<Item = (&'m [u8], &'m [u8])>,
    role: impl Fn(&[u8]) -> NameRole<'m>,
    mut headers: Vec<(Cow<'m, str>, Cow<'m, str>)>,
) -> Built<'m> {
    headers.clear();
    let mut request = Request {
        headers,
        ..Request::default()
    };
    let mut owned_seen = false;
    let mut host_header = None;
    // Names whose first copy was not UTF-8: the header is absent for the policy, so a later
    // copy must not stand in for it (`Request::header` reads the first). Empty, and not
    // allocated, on nearly every request.
    let mut absent: Vec<&'m str> = Vec::new();
    for (raw_name, value) in entries {
        // Not `headers::lowercase`: building its `Cow` for every name cost more than the test.
        let lowered;
        let name = if words::may_have_ascii_uppercase(raw_name) {
            lowered = raw_name.to_ascii_lowercase();
            lowered.as_slice()
        } else {
            raw_name
        };
        if let [b':', pseudo @ ..] = name {
            match pseudo {
                b"method" => first(&mut request.method, value),
                b"path" => first(&mut request.path, value),
                b"authority" => first(&mut request.host, value),
                _ => {}
            }
            continue;
        }
        if name == b"host" && host_header.is_none() {
            host_header = Some(value);
        }
        match role(name) {
            // Values are checked for UTF-8 only when used: most are not.
            NameRole::Read(name) => match text(value) {
                Some(value) if absent.is_empty() || !absent.contains(&name) => {
                    request.headers.push((name.into(), value.into()));
                }
                Some(_) => {}
                // Every `cookie` header is read (each holds its own cookies), so a mangled
                // one hides no other.
                None if name != "cookie" && !request.headers.iter().any(|(n, _)| n == name) => {
                    absent.push(name);
                }
                None => {}
            },
            NameRole::Owned => owned_seen = true,
            NameRole::Other => {}
        }
    }
    if request.host.is_empty() {
        if let Some(host) = host_header {
            first(&mut request.host, host);
        }
    }
    Built {
        request,
        owned_seen,
    }
}

/// Fills an empty pseudo-header slot; text that is not UTF-8 is decoded with U+FFFD.
fn first<'m>(slot: &mut Cow<'m, str>, value: &'m [u8]) {
    if slot.is_empty() {
        // The strict check first: it is several times cheaper than the lossy decoder's chunk
        // walk for the valid text nearly every request has.
        *slot = match text(value) {
            Some(text) => Cow::Borrowed(text),
            None => String::from_utf8_lossy(value),
        };
    }
}

/// The bytes as text, if they are UTF-8. Header values are nearly always ASCII, which a
/// word-wise test confirms in fewer instructions than the UTF-8 check.
fn text(bytes: &[u8]) -> Option<&str> {
    if words::is_ascii(bytes) {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
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
    use crate::headers;

    /// Reads these names and owns `x-switchyard-*`.
    fn role<'a>(name: &[u8]) -> NameRole<'a> {
        const READ: [&str; 3] = ["x-tenant-id", "x-bad", "host"];
        match READ.iter().find(|r| r.as_bytes() == name) {
            Some(read) => NameRole::Read(read),
            None if name.starts_with(b"x-switchyard-") => NameRole::Owned,
            None => NameRole::Other,
        }
    }

    #[test]
    fn pseudo_headers_fill_the_request() {
        let bytes = headers::serialize_map::<&str, &[u8]>(&[
            (":method", b"POST"),
            (":path", b"/v1/chat?x=1"),
            (":authority", b"api.example"),
            (":scheme", b"https"),
            ("X-Tenant-Id", b"acme"),
            ("x-bad", b"\xff"),
            ("x-user-id", b"u1"),
            (":path", b"/second"),
        ]);
        let Built {
            request,
            owned_seen,
        } = build(headers::entries(&bytes), role, Vec::new());
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/chat?x=1");
        assert_eq!(request.host, "api.example");
        assert_eq!(request.source_ip, "", "filled only when a flag needs it");
        assert_eq!(source_ip(b"10.0.0.1:443"), "10.0.0.1");
        assert_eq!(source_ip(b"[::1]:443"), "::1");
        assert_eq!(
            request.headers,
            vec![(Cow::Borrowed("x-tenant-id"), Cow::Borrowed("acme"))],
            "an upper-case name is read under the policy's name; a value not UTF-8 and a name \
             not asked for are left out"
        );
        assert!(!owned_seen);
    }

    /// The first copy of a header is the one read, so a first copy that is not UTF-8 leaves
    /// the header absent: the next copy does not take its place. Cookie headers are each read.
    #[test]
    fn a_mangled_first_copy_leaves_the_header_absent() {
        let role = |name: &[u8]| match name {
            b"x-tenant-id" => NameRole::Read("x-tenant-id"),
            b"cookie" => NameRole::Read("cookie"),
            _ => NameRole::Other,
        };
        let bytes = headers::serialize_map::<&str, &[u8]>(&[
            ("x-tenant-id", b"glob\xffex"),
            ("x-tenant-id", b"acme"),
            ("cookie", b"a=\xff"),
            ("cookie", b"sid=s1"),
        ]);
        let request = build(headers::entries(&bytes), role, Vec::new()).request;
        assert_eq!(request.header("x-tenant-id"), None);
        assert_eq!(request.cookie("sid").as_deref(), Some("s1"));
        let bytes = headers::serialize_map::<&str, &[u8]>(&[
            ("x-tenant-id", b"acme"),
            ("x-tenant-id", b"glob\xffex"),
        ]);
        let request = build(headers::entries(&bytes), role, Vec::new()).request;
        assert_eq!(request.header("x-tenant-id"), Some("acme"));
    }

    #[test]
    fn owned_headers_are_noted_not_read() {
        let bytes = headers::serialize_map::<&str, &str>(&[
            ("x-tenant-id", "acme"),
            ("X-Switchyard-Cluster", "ai-premium"),
        ]);
        let built = build(headers::entries(&bytes), role, Vec::new());
        assert!(built.owned_seen);
        assert_eq!(built.request.headers.len(), 1);
    }

    #[test]
    fn a_stray_byte_keeps_the_path_and_host() {
        let bytes = headers::serialize_map::<&str, &[u8]>(&[
            (":path", b"/v1/agent/run?x=\xff"),
            (":path", b"/second"),
            ("host", b"api\xfe.example"),
            ("x-tenant-id", b"\xffacme"),
        ]);
        let request = build(headers::entries(&bytes), role, Vec::new()).request;
        assert_eq!(
            request.path, "/v1/agent/run?x=\u{fffd}",
            "the first :path, decoded"
        );
        assert!(request.path_only().starts_with("/v1/agent/"));
        assert_eq!(request.host, "api\u{fffd}.example");
        assert!(
            request.headers.is_empty(),
            "a header value is never guessed, the host header's included"
        );
    }
}
