//! Reading and rewriting the request's header map.
//!
//! What a client can send and what this module does with it (the filter must never trap, so
//! nothing here assumes well-formed input):
//!
//! - **Raw bytes.** The whole map is fetched once, as bytes ([`crate::abi`]), and parsed
//!   defensively: a malformed map from the host yields the entries before the damage.
//! - **Names** arrive lower-cased from Envoy's codecs; they are lower-cased again here anyway
//!   (ASCII only) before anything compares them.
//! - **A value that is not UTF-8** (obs-text bytes) makes that header *absent* for policy
//!   evaluation: the engine works on text, and guessing a decoding could make a mangled tenant
//!   id match someone else's rule. The header itself is left in place for upstream.
//! - **A name that is not UTF-8** is likewise absent for evaluation, but is still checked
//!   (as bytes) against the owned-header test and removed if switchyard owns it: one under
//!   `x-switchyard-` is, whatever bytes follow.
//! - **Empty values** are kept as empty strings; the engine treats an empty value as absent.
//! - **Size.** No limit is imposed here: Envoy already bounds the header block
//!   (`max_request_headers_kb`, 60 KiB by default) and count (`max_headers_count`), and every
//!   step is linear in the map's size. 64 KiB values and hundreds of headers are fine.

use std::borrow::Cow;

use crate::abi;

/// One header as raw bytes borrowed from the serialized map, name lower-cased (a copy only in
/// the rare case the host sent upper-case letters: Envoy's codecs lower-case names already).
pub type RawHeader<'m> = (Cow<'m, [u8]>, &'m [u8]);

/// The serialized request header map (pseudo-headers included), as the host sent it; parse it
/// with [`parse_map`]. `None` when the host fails (logged): treat the request as one with no
/// headers, which no flag touches.
pub fn request_header_bytes() -> Option<Vec<u8>> {
    abi::get_header_map_bytes(abi::REQUEST_HEADERS)
        .map_err(|status| {
            crate::warn(&format!(
                "switchyard: cannot read request headers (status {})",
                status.0
            ));
        })
        .ok()
}

/// One response header's value, if present and UTF-8 (a single host call, not the whole map).
pub fn response_header(name: &str) -> Option<String> {
    abi::get_header_value(abi::RESPONSE_HEADERS, name).and_then(|v| String::from_utf8(v).ok())
}

/// The first header with this (lower-case) name whose value is UTF-8.
pub fn find<'h>(headers: &'h [RawHeader<'_>], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.as_ref() == name.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Parses the proxy-wasm map format: a u32 count, a (name length, value length) u32 pair per
/// entry, then each name and value followed by a NUL, integers little-endian. Stops at the
/// first entry that does not fit in the buffer instead of panicking. Names and values borrow
/// from `bytes`: parsing allocates only the list.
pub fn parse_map(bytes: &[u8]) -> Vec<RawHeader<'_>> {
    let Some(count) = read_u32(bytes, 0) else {
        return Vec::new();
    };
    let count = count as usize;
    // The length table alone must fit: a corrupt count cannot make us allocate gigabytes.
    let Some(mut data) = count.checked_mul(8).and_then(|table| table.checked_add(4)) else {
        return Vec::new();
    };
    if data > bytes.len() {
        return Vec::new();
    }
    let mut headers = Vec::with_capacity(count);
    for i in 0..count {
        let entry = (|| {
            let name_len = read_u32(bytes, 4 + i * 8)? as usize;
            let value_len = read_u32(bytes, 8 + i * 8)? as usize;
            let name_end = data.checked_add(name_len)?;
            let name = bytes.get(data..name_end)?;
            let value_start = name_end.checked_add(1)?;
            let value_end = value_start.checked_add(value_len)?;
            let value = bytes.get(value_start..value_end)?;
            data = value_end.checked_add(1)?;
            let name = if may_have_ascii_uppercase(name) {
                Cow::Owned(name.to_ascii_lowercase())
            } else {
                Cow::Borrowed(name)
            };
            Some((name, value))
        })();
        match entry {
            Some(header) => headers.push(header),
            None => break,
        }
    }
    headers
}

/// Whether [`parse_map`] returned every entry the map declares (a map from Envoy always parses
/// whole; a damaged one stops early).
pub fn parsed_whole(bytes: &[u8], parsed: &[RawHeader<'_>]) -> bool {
    read_u32(bytes, 0).is_some_and(|count| count as usize == parsed.len())
}

/// Serializes headers in the proxy-wasm map format that [`parse_map`] reads.
pub fn serialize_map<N: AsRef<[u8]>, V: AsRef<[u8]>>(map: &[(N, V)]) -> Vec<u8> {
    let size = 4 + map
        .iter()
        .map(|(n, v)| 10 + n.as_ref().len() + v.as_ref().len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(map.len()));
    for (n, v) in map {
        out.extend_from_slice(&len(n.as_ref().len()));
        out.extend_from_slice(&len(v.as_ref().len()));
    }
    for (n, v) in map {
        for part in [n.as_ref(), v.as_ref()] {
            out.extend_from_slice(part);
            out.push(0);
        }
    }
    out
}

/// Whether `name` may have an ASCII upper-case letter: never false when it has one, and true
/// otherwise only for some bytes outside ASCII (which then cost a needless lower-casing copy).
/// Eight bytes at a time: every request header name goes through this, and Envoy's names are
/// already lower-case, so the answer is nearly always no (a byte-by-byte scan cost about 40 wasm
/// instructions per name).
fn may_have_ascii_uppercase(name: &[u8]) -> bool {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = name.chunks_exact(8);
    let word_has = |word: u64| {
        // Each byte's low seven bits, b: b + 0x3f sets the byte's high bit when b >= 'A', and
        // b + 0x25 when b > 'Z'; neither sum carries into the next byte.
        let low = word & LOW7;
        let at_least_a = low + 0x3f3f_3f3f_3f3f_3f3f;
        let above_z = low + 0x2525_2525_2525_2525;
        at_least_a & !above_z & HIGH != 0
    };
    let whole = chunks
        .by_ref()
        .any(|c| word_has(u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))));
    // The last few bytes one by one: copying them into a word is a `memory.copy`, a call into
    // the runtime.
    whole || chunks.remainder().iter().any(u8::is_ascii_uppercase)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// Removes, from the request and from `headers`, every header switchyard owns, so a client
/// can neither pick its own route nor forge exposure data.
/// `is_owned` sees the lower-cased name as bytes, as
/// [`switchyard_policy::CompiledPolicy::is_owned_header`] takes it.
pub fn remove_owned(headers: &mut Vec<RawHeader<'_>>, is_owned: impl Fn(&[u8]) -> bool) {
    // Nearly every request has none: look before building anything.
    if !headers.iter().any(|(name, _)| is_owned(name)) {
        return;
    }
    let mut removed: Vec<Vec<u8>> = Vec::new();
    headers.retain(|(name, _)| {
        if !is_owned(name) {
            return true;
        }
        // One removal per name: the host drops every entry with that name at once.
        if !removed.iter().any(|r| r.as_slice() == name.as_ref()) {
            if let Err(status) = abi::remove_header(abi::REQUEST_HEADERS, name) {
                crate::warn(&format!(
                    "switchyard: cannot remove client header {} (status {})",
                    String::from_utf8_lossy(name),
                    status.0
                ));
            }
            removed.push(name.to_vec());
        }
        false
    });
}

/// How to write a request header switchyard owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnedWrite {
    /// Every client copy is gone ([`remove_owned`] saw the whole map): adding the entry is
    /// enough, and spares Envoy the search for one to replace (about 500 instructions each).
    Add,
    /// The map was not read whole, so a client copy may be left: replace it.
    Replace,
}

/// Writes a request header switchyard owns.
pub fn set_owned_request_header(how: OwnedWrite, name: &str, value: &str) {
    write(
        abi::REQUEST_HEADERS,
        name,
        value,
        how == OwnedWrite::Replace,
    );
}

/// Sets (replaces) a response header: an upstream may send its own copy.
pub fn set_response_header(name: &str, value: &str) {
    write(abi::RESPONSE_HEADERS, name, value, true);
}

fn write(map_type: u32, name: &str, value: &str, replace: bool) {
    if let Err(status) = abi::write_header(map_type, name, value, replace) {
        crate::warn(&format!(
            "switchyard: cannot set header {name} (status {})",
            status.0
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_test_finds_every_upper_case_letter() {
        // Every byte value at every place of names of 0 to 17 bytes (both sides of the 8-byte
        // words), in a lower-case name and beside a non-ASCII byte.
        for len in 1..=17usize {
            for at in 0..len {
                for byte in 0..=255u8 {
                    for filler in [b'x', 0xff] {
                        let mut name = vec![filler; len];
                        name[at] = byte;
                        let upper = name.iter().any(u8::is_ascii_uppercase);
                        let said = may_have_ascii_uppercase(&name);
                        assert!(said || !upper, "{name:?}");
                        if name.is_ascii() {
                            assert_eq!(said, upper, "{name:?}");
                        }
                    }
                }
            }
        }
        assert!(!may_have_ascii_uppercase(b""));
        assert!(!may_have_ascii_uppercase(b"x-conversation-id"));
    }

    #[test]
    fn parses_raw_bytes_and_lowercases_names() {
        let bytes = serialize_map::<&[u8], &[u8]>(&[
            (b"X-Tenant-Id", b"\xff\xfe"),
            (b":path", b"/"),
            (b"e", b""),
        ]);
        let map = parse_map(&bytes);
        let map: Vec<(Vec<u8>, Vec<u8>)> = map
            .into_iter()
            .map(|(n, v)| (n.into_owned(), v.to_vec()))
            .collect();
        assert_eq!(
            map,
            vec![
                (b"x-tenant-id".to_vec(), b"\xff\xfe".to_vec()),
                (b":path".to_vec(), b"/".to_vec()),
                (b"e".to_vec(), Vec::new()),
            ]
        );
    }

    #[test]
    fn malformed_maps_never_panic() {
        let good = serialize_map::<&[u8], &[u8]>(&[(b"a", b"1"), (b"b", b"2")]);
        for cut in 0..good.len() {
            let _ = parse_map(&good[..cut]);
        }
        assert_eq!(parse_map(&good[..good.len() - 2]).len(), 1);
        assert!(parse_map(&[0xff, 0xff, 0xff, 0xff]).is_empty());
        assert!(parse_map(&[]).is_empty());
        assert!(parsed_whole(&good, &parse_map(&good)));
        let cut = &good[..good.len() - 2];
        assert!(!parsed_whole(cut, &parse_map(cut)));
        assert!(!parsed_whole(&[], &[]));
        let mut lying = good.clone();
        lying[4] = 200; // first name length far past the end
        assert!(parse_map(&lying).is_empty());
    }
}
