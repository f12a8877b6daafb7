//! The request as the engine sees it. The Envoy filter fills it from pseudo-headers, headers
//! and the `source.address` property; `switchyard eval` fills it from a JSON line.

use crate::names::{find_either, same_bytes};
use std::borrow::Cow;
use std::cell::OnceCell;

/// One HTTP request. Every field is optional in the sense that an empty string means absent.
///
/// The text is borrowed where it can be: the filter builds a request per HTTP request straight
/// from the host's header buffer, without copying a value (`Cow::Borrowed`); the command and
/// the tests own theirs (`Cow::Owned`, `Request<'static>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Cow<'a, str>,
    /// The request target as sent (`:path`), query string included.
    pub path: Cow<'a, str>,
    /// `:authority` / `Host`.
    pub host: Cow<'a, str>,
    /// The client address, without a port.
    pub source_ip: Cow<'a, str>,
    /// Header names in any case; the first occurrence of a name is the one read.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

use percent_encoding::percent_decode_str;

use crate::compile::{AttrSource, CompiledPolicy};
use crate::model::Builtin;

impl Request<'_> {
    /// The first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        // The length test first, inline: most names differ in length, and the comparison
        // itself is a call. Then bytes as they are, since names nearly always arrive
        // lower-case, like the policy's (a case-blind comparison goes byte by byte).
        self.headers
            .iter()
            .find(|(n, _)| {
                n.len() == name.len()
                    && (same_bytes(n.as_bytes(), name.as_bytes()) || n.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.as_ref())
    }

    /// The path without its query string or fragment.
    pub fn path_only(&self) -> &str {
        // Bytes, not a `[char; 2]` pattern, which decodes every character, on every request.
        let end = find_either(self.path.as_bytes(), b'?', b'#').unwrap_or(self.path.len());
        // `end` is at an ASCII byte, so on a character boundary.
        self.path.get(..end).unwrap_or(&self.path)
    }

    /// The query string, without `?` and fragment. A `?` after the `#` is the fragment's.
    pub fn query(&self) -> &str {
        let path_end = self.path_only().len();
        match self.path[path_end..].strip_prefix('?') {
            None => "",
            Some(rest) => {
                let end = rest.find('#').unwrap_or(rest.len());
                &rest[..end]
            }
        }
    }

    /// The host in lower case, without a port (`API.example:8443` → `api.example`,
    /// `[::1]:80` → `[::1]`).
    pub fn host_only(&self) -> Cow<'_, str> {
        let h = host_without_port(self.host.as_ref());
        if h.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(h.to_ascii_lowercase())
        } else {
            Cow::Borrowed(h)
        }
    }

    /// A cookie's value, percent-decoded. Every `cookie` header is read (HTTP/2 may split
    /// them); within them the first pair with this exact name wins. A pair without `=` is
    /// not a cookie and is skipped; surrounding double quotes are removed.
    pub fn cookie(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .find_map(|pair| {
                let (n, v) = pair.split_once('=')?;
                (n.trim() == name).then(|| {
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v);
                    decode(v, false)
                })
            })
    }

    /// A query parameter's value, decoded as a form (`+` is a space, `%xx` a byte). The first
    /// parameter with this name wins; a parameter without `=` has the empty value.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.query()
            .split('&')
            .filter(|p| !p.is_empty())
            .find_map(|pair| {
                let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(n, true) == name).then(|| decode(v, true))
            })
    }
}

/// Percent-decodes (and for forms, turns `+` into a space). Bytes that do not decode to UTF-8
/// become U+FFFD rather than failing the request.
fn decode(s: &str, form: bool) -> Cow<'_, str> {
    if form && s.contains('+') {
        let spaced = s.replace('+', " ");
        return Cow::Owned(percent_decode_str(&spaced).decode_utf8_lossy().into_owned());
    }
    percent_decode_str(s).decode_utf8_lossy()
}

/// The request's value for each context attribute of a policy, by attribute index, decoded
/// the first time a flag in scope asks for it: a large policy's attributes cost a request
/// nothing unless its flags apply (a cookie is parsed, a header looked up, only if needed).
pub(crate) struct Context<'p, 'r> {
    sources: &'p [AttrSource],
    req: &'r Request<'r>,
    /// The first [`INLINE_VALUES`] attributes' values in place, the rest in `more`: a policy
    /// with few attributes (the contract's example has five) allocates nothing per request.
    first: [Value<'r>; INLINE_VALUES],
    more: Vec<Value<'r>>,
}

type Value<'r> = OnceCell<Option<Cow<'r, str>>>;

const INLINE_VALUES: usize = 8;

impl<'p, 'r> Context<'p, 'r> {
    pub fn new(policy: &'p CompiledPolicy, req: &'r Request<'_>) -> Context<'p, 'r> {
        let n = policy.attributes.len();
        Context {
            sources: &policy.attributes,
            req,
            first: Default::default(),
            // `Vec::new` does not allocate. (Collecting the empty range instead ran 56 more
            // wasm instructions per request with the example policy.)
            more: if n > INLINE_VALUES {
                (INLINE_VALUES..n).map(|_| OnceCell::new()).collect()
            } else {
                Vec::new()
            },
        }
    }

    pub fn get(&self, attribute: usize) -> Option<&str> {
        let cell = match attribute.checked_sub(INLINE_VALUES) {
            None => self.first.get(attribute),
            Some(at) => self.more.get(at),
        };
        let (cell, source) = cell.zip(self.sources.get(attribute))?;
        cell.get_or_init(|| value_of(source, self.req)).as_deref()
    }
}

fn value_of<'r>(source: &AttrSource, req: &'r Request<'r>) -> Option<Cow<'r, str>> {
    match source {
        AttrSource::Header(h) => req.header(h).map(Cow::Borrowed),
        AttrSource::Cookie(c) => req.cookie(c),
        AttrSource::Query(q) => req.query_param(q),
        AttrSource::Builtin(b) => {
            let v: Cow<'r, str> = match b {
                Builtin::Path => Cow::Borrowed(req.path_only()),
                Builtin::Host => req.host_only(),
                Builtin::Method => Cow::Borrowed(req.method.as_ref()),
                Builtin::SourceIp => Cow::Borrowed(req.source_ip.as_ref()),
            };
            (!v.is_empty()).then_some(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_keeps_a_repeated_header_and_the_first_is_read() {
        let r =
            Request::from_json(r#"{"headers": {"x-tenant-id": "globex", "x-tenant-id": "acme"}}"#);
        let r = r
            .as_ref()
            .map(|r| (r.headers.len(), r.header("x-tenant-id")));
        assert_eq!(r, Ok((2, Some("globex"))));
        assert_eq!(
            Request::from_json("[]").err().as_deref(),
            Some("a request must be a JSON object")
        );
        assert!(Request::from_json(r#"{"headers": ["x"]}"#).is_err());
    }

    fn req<'a>(path: &'a str, headers: &[(&'a str, &'a str)]) -> Request<'a> {
        Request {
            path: path.into(),
            headers: headers.iter().map(|&(n, v)| (n.into(), v.into())).collect(),
            ..Request::default()
        }
    }

    #[test]
    fn attributes_past_the_inline_values_are_read() {
        // Twelve attributes: the first eight are kept in place, the rest in `more`.
        let context: Vec<String> = (0..12)
            .map(|i| format!(r#""a{i}": {{"header": "x-a{i}"}}"#))
            .collect();
        let when: Vec<String> = [11, 0, 8, 7]
            .iter()
            .map(|i| format!(r#"{{"attribute": "a{i}", "op": "in", "values": ["v{i}"]}}"#))
            .collect();
        let policy = crate::load(&format!(
            r#"{{"version": "many", "context": {{{}}}, "flags": [{{"key": "f",
              "variations": {{"on": {{}}, "off": {{}}}}, "off_variation": "off",
              "rules": [{{"when": [{}], "serve": "on"}}], "default": {{"serve": "off"}}}}]}}"#,
            context.join(", "),
            when.join(", ")
        ))
        .map_err(|e| e.to_string());
        let Ok(policy) = policy else {
            panic!("{policy:?}");
        };
        let headers: Vec<(String, String)> = (0..12)
            .map(|i| (format!("x-a{i}"), format!("v{i}")))
            .collect();
        let served = |headers: &[(String, String)]| {
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let outcome = policy.evaluate(&req("/", &pairs));
            outcome.decisions[0].variation.map(str::to_string)
        };
        assert_eq!(served(&headers).as_deref(), Some("on"));
        for changed in [0, 7, 8, 11] {
            let mut other = headers.clone();
            other[changed].1 = "other".to_string();
            assert_eq!(served(&other).as_deref(), Some("off"), "a{changed}");
        }
    }

    #[test]
    fn headers_are_case_insensitive_and_first_wins() {
        let r = req("/", &[("X-Tenant-Id", "acme"), ("x-tenant-id", "other")]);
        assert_eq!(r.header("x-tenant-id"), Some("acme"));
        assert_eq!(r.header("X-TENANT-ID"), Some("acme"));
        assert_eq!(r.header("x-user-id"), None);
    }

    #[test]
    fn cookies() {
        let r = req(
            "/",
            &[
                ("cookie", "a=1; sid=%E2%9C%93x; flag; empty=; sid=second"),
                ("Cookie", "late=yes; q=\"quoted\""),
            ],
        );
        assert_eq!(r.cookie("sid").as_deref(), Some("✓x"));
        assert_eq!(r.cookie("a").as_deref(), Some("1"));
        assert_eq!(r.cookie("empty").as_deref(), Some(""));
        assert_eq!(r.cookie("flag"), None, "a pair without = is not a cookie");
        assert_eq!(
            r.cookie("late").as_deref(),
            Some("yes"),
            "all cookie headers are read"
        );
        assert_eq!(r.cookie("q").as_deref(), Some("quoted"));
        assert_eq!(r.cookie("SID"), None, "cookie names are case-sensitive");
        assert_eq!(
            req("/", &[("cookie", "x=%FF")]).cookie("x").as_deref(),
            Some("\u{fffd}")
        );
    }

    #[test]
    fn query_parameters() {
        let r = req(
            "/v1/chat?plan=pro&plan=free&q=a+b%20c&flag&empty=&na%6De=v#frag",
            &[],
        );
        assert_eq!(r.path_only(), "/v1/chat");
        assert_eq!(r.query_param("plan").as_deref(), Some("pro"), "first wins");
        assert_eq!(r.query_param("q").as_deref(), Some("a b c"));
        assert_eq!(
            r.query_param("flag").as_deref(),
            Some(""),
            "missing = means empty"
        );
        assert_eq!(r.query_param("empty").as_deref(), Some(""));
        assert_eq!(
            r.query_param("name").as_deref(),
            Some("v"),
            "names are decoded too"
        );
        assert_eq!(r.query_param("frag"), None);
        assert_eq!(req("/x", &[]).query_param("a"), None);
        assert_eq!(req("/x?", &[]).query_param("a"), None);
        assert_eq!(
            req("/x?a=%zz", &[]).query_param("a").as_deref(),
            Some("%zz")
        );
        // A `?` in the fragment starts no query: the fragment is not the query string.
        let r = req("/v1/chat#frag?plan=pro", &[]);
        assert_eq!((r.path_only(), r.query()), ("/v1/chat", ""));
        assert_eq!(r.query_param("plan"), None);
        let r = req("/v1/chat?a=1#frag?plan=pro", &[]);
        assert_eq!(r.query(), "a=1");
        assert_eq!(r.query_param("plan"), None);
    }

    #[test]
    fn ports_are_stripped_from_addresses() {
        assert_eq!(ip_without_port("1.2.3.4:5678"), "1.2.3.4");
        assert_eq!(ip_without_port("1.2.3.4"), "1.2.3.4");
        assert_eq!(ip_without_port("[::1]:5678"), "::1");
        assert_eq!(ip_without_port("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(ip_without_port("2001:db8::1"), "2001:db8::1");
        assert_eq!(ip_without_port("[::1"), "[::1");
        assert_eq!(ip_without_port(""), "");
    }

    #[test]
    fn host_without_port() {
        let host = |h: &str| {
            Request {
                host: h.into(),
                ..Request::default()
            }
            .host_only()
            .into_owned()
        };
        assert_eq!(host("API.Example:8443"), "api.example");
        assert_eq!(host("api.example"), "api.example");
        assert_eq!(host("[::1]:80"), "[::1]");
        assert_eq!(host("[::1]"), "[::1]");
        assert_eq!(host("2001:DB8::1"), "2001:db8::1");
        assert_eq!(host("api.example:"), "api.example");
        assert_eq!(host(""), "");
    }
}

/// A host without its port, case kept: `API.example:8443` → `API.example`, `[::1]:80` →
/// `[::1]`. The request's `host` attribute and a flag's `match.host` are both read through it.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        // More than one colon: a bare IPv6 address (not valid in a Host header), kept whole.
        Some(colon)
            if !host[..colon].contains(':')
                && host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &host[..colon]
        }
        _ => host,
    }
}

/// A client address without its port: `1.2.3.4:5678` → `1.2.3.4`, `[::1]:5678` → `::1`,
/// `[2001:db8::1]` → `2001:db8::1`. A bare IPv6 address (more than one colon) or anything else
/// without a recognisable port is returned as it is. Used for Envoy's `source.address` and by
/// the `cidr` operator, so both read addresses alike.
pub fn ip_without_port(address: &str) -> &str {
    let bare = host_without_port(address);
    bare.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(bare)
}

/// The request line format of `switchyard eval` (every field optional):
/// `{"method", "path", "host", "source_ip", "headers": {NAME: VALUE}}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestLine<'a> {
    #[serde(default)]
    method: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    source_ip: String,
    #[serde(default, borrow, deserialize_with = "header_pairs")]
    headers: Vec<(String, HeaderValue<'a>)>,
}

/// A header's value in a request line: its text, or what the line has instead, for the
/// message that refuses it.
enum HeaderValue<'a> {
    Text(std::borrow::Cow<'a, str>),
    Not(&'static str),
}

impl<'de> serde::Deserialize<'de> for HeaderValue<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess};
        struct Kind;
        impl<'de> serde::de::Visitor<'de> for Kind {
            type Value = HeaderValue<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a header value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(HeaderValue::Text(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(HeaderValue::Text(v.to_string().into()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(HeaderValue::Not("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(HeaderValue::Not("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(HeaderValue::Not("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(HeaderValue::Not("a number"))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(HeaderValue::Not("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(HeaderValue::Not("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(HeaderValue::Not("an object"))
            }
        }
        de.deserialize_any(Kind)
    }
}

/// The `headers` object's entries in order, a repeated name kept twice: a request can carry a
/// header twice, and the engine reads the first, as the filter does (a map would keep the
/// last copy).
fn header_pairs<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Vec<(String, HeaderValue<'de>)>, D::Error> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = Vec<(String, HeaderValue<'de>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of header names and values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    de.deserialize_map(Pairs)
}

impl Request<'static> {
    /// Reads one request in `switchyard eval`'s JSON format. A header value must be a string.
    pub fn from_json(text: &str) -> Result<Request<'static>, String> {
        // A struct would also read a JSON array (`[]` as an empty request): only an object is.
        if !text.trim_start().starts_with('{') {
            return Err("a request must be a JSON object".to_string());
        }
        let line: RequestLine = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut headers = Vec::with_capacity(line.headers.len());
        for (name, value) in line.headers {
            match value {
                HeaderValue::Text(v) => headers.push((name.into(), String::from(v).into())),
                HeaderValue::Not(kind) => {
                    return Err(format!(
                        "header {} must have a string value, found {kind}",
                        crate::error::quoted(&name),
                    ))
                }
            }
        }
        Ok(Request {
            method: line.method.into(),
            path: line.path.into(),
            host: line.host.into(),
            source_ip: line.source_ip.into(),
            headers,
        })
    }
}
