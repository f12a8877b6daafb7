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
//! - **Empty values** are kept as empty strings: an empty unit value counts as missing
//!   (`TARGETING_KEY_MISSING`), while an empty header is still present for `exists` and
//!   `header_present`.
//! - **Size.** No limit is imposed here: Envoy already bounds the header block
//!   (`max_request_headers_kb`, 60 KiB by default) and count (`max_headers_count`), and every
//!   step is linear in the map's size. 64 KiB values and hundreds of headers are fine.

use std::borrow::Cow;

use crate::abi;
use crate::words;

/// The serialized request header map (pseudo-headers included), as the host sent it; read it
/// with [`entries`]. `None` when the host fails (logged): treat the request as one with no
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

/// The value of the first entry with this (lower-case) name whose value is UTF-8.
pub fn find<'m>(bytes: &'m [u8], name: &str) -> Option<&'m str> {
    entries(bytes)
        .find(|(n, _)| lowercase(n).as_ref() == name.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// The entries of a map in the proxy-wasm format: a u32 count, a (name length, value length)
/// u32 pair per entry, then each name and value followed by a NUL, integers little-endian.
/// Read in place, as the request is built: names and values borrow from `bytes`, nothing is
/// allocated, and the map is walked once (a list of the entries cost the filter about a
/// tenth of its instructions per request). Names come as sent; see [`lowercase`].
pub fn entries(bytes: &[u8]) -> Entries<'_> {
    let declared = words::u32_at(bytes, 0);
    // The length table alone must fit: a corrupt count stops the walk before it starts.
    let table_fits = declared
        .and_then(|count| (count as usize).checked_mul(8))
        .and_then(|table| table.checked_add(4))
        .is_some_and(|end| end <= bytes.len());
    let count = if table_fits {
        declared.map_or(0, |c| c as usize)
    } else {
        0
    };
    Entries {
        bytes,
        declared,
        next: 0,
        count,
        data: 4 + count * 8,
    }
}

/// The walk [`entries`] starts: (name, value) pairs as raw bytes. It stops at the first entry
/// that does not fit in the buffer instead of panicking, so a damaged map yields the entries
/// before the damage.
#[derive(Debug, Clone)]
pub struct Entries<'m> {
    bytes: &'m [u8],
    /// The count the map declares (`None`: not even that fits).
    declared: Option<u32>,
    /// The next entry's index, and where the walk stops.
    next: usize,
    count: usize,
    /// Where the next entry's name starts.
    data: usize,
}

impl Entries<'_> {
    /// After the walk: whether it yielded every entry the map declares (a map from Envoy
    /// always does; a damaged one stops early).
    pub fn whole(&self) -> bool {
        self.declared
            .is_some_and(|count| count as usize == self.next)
    }
}

impl<'m> Iterator for Entries<'m> {
    type Item = (&'m [u8], &'m [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        match self.entry() {
            Some((name, value)) => {
                self.next += 1;
                // Past the value and its NUL (`entry` checked that the value fits, so this
                // cannot overflow; the last NUL need not be there).
                self.data += name.len() + value.len() + 2;
                Some((name, value))
            }
            None => {
                // Damaged: nothing after this entry can be trusted.
                self.count = self.next;
                None
            }
        }
    }
}

impl<'m> Entries<'m> {
    /// The next entry's name and value, if they fit in the buffer.
    #[inline]
    fn entry(&self) -> Option<(&'m [u8], &'m [u8])> {
        let table = 4 + self.next * 8;
        let name_len = words::u32_at(self.bytes, table)? as usize;
        let value_len = words::u32_at(self.bytes, table + 4)? as usize;
        let rest = self.bytes.get(self.data..)?;
        // In 64 bits: two lengths near 4 GiB cannot wrap around and pass.
        if name_len as u64 + 1 + value_len as u64 > rest.len() as u64 {
            return None;
        }
        let name = rest.get(..name_len)?;
        let value = rest.get(name_len + 1..name_len + 1 + value_len)?;
        Some((name, value))
    }
}

/// A header name lower-cased (ASCII only): borrowed as it is unless the host sent upper-case
/// letters, which Envoy's codecs never do.
pub fn lowercase(name: &[u8]) -> Cow<'_, [u8]> {
    if words::may_have_ascii_uppercase(name) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Serializes headers in the proxy-wasm map format that [`entries`] reads.
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

/// Removes from the request every header switchyard owns, so a client can neither pick its
/// own route nor forge exposure data. `bytes` is the request's map as read before;
/// `is_owned` sees each lower-cased name as bytes, as
/// [`switchyard_policy::CompiledPolicy::is_owned_header`] takes it. Nearly every request has
/// none: the filter calls this only when building the request met one.
pub fn remove_owned(bytes: &[u8], is_owned: impl Fn(&[u8]) -> bool) {
    let mut removed: Vec<Vec<u8>> = Vec::new();
    for (name, _) in entries(bytes) {
        let name = lowercase(name);
        // One removal per name: the host drops every entry with that name at once.
        if !is_owned(&name) || removed.iter().any(|r| r.as_slice() == name.as_ref()) {
            continue;
        }
        if let Err(status) = abi::remove_header(abi::REQUEST_HEADERS, &name) {
            crate::warn(&format!(
                "switchyard: cannot remove client header {} (status {})",
                String::from_utf8_lossy(&name),
                status.0
            ));
        }
        removed.push(name.into_owned());
    }
}

/// How to write a request header switchyard owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnedWrite {
    /// Every client copy is gone ([`remove_owned`] saw the whole map, or the whole map had
    /// none): adding the entry is
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

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    /// The walk as owned pairs, names lower-cased, and whether it was whole.
    fn walk(bytes: &[u8]) -> (Pairs, bool) {
        let mut walk = entries(bytes);
        let pairs = walk
            .by_ref()
            .map(|(n, v)| (lowercase(n).into_owned(), v.to_vec()))
            .collect();
        (pairs, walk.whole())
    }

    #[test]
    fn reads_raw_bytes_and_lowercases_names() {
        let bytes = serialize_map::<&[u8], &[u8]>(&[
            (b"X-Tenant-Id", b"\xff\xfe"),
            (b":path", b"/"),
            (b"e", b""),
        ]);
        assert_eq!(
            walk(&bytes),
            (
                vec![
                    (b"x-tenant-id".to_vec(), b"\xff\xfe".to_vec()),
                    (b":path".to_vec(), b"/".to_vec()),
                    (b"e".to_vec(), Vec::new()),
                ],
                true
            )
        );
        assert_eq!(find(&bytes, ":path"), Some("/"));
        assert_eq!(find(&bytes, "x-tenant-id"), None, "not UTF-8");
        assert_eq!(find(&bytes, "x-user-id"), None);
    }

    #[test]
    fn malformed_maps_never_panic() {
        let good = serialize_map::<&[u8], &[u8]>(&[(b"a", b"1"), (b"b", b"2")]);
        // Every cut that loses a byte of a name or value (the last NUL is not needed).
        for cut in 0..good.len() - 1 {
            let (pairs, whole) = walk(&good[..cut]);
            assert!(pairs.len() < 2 && !whole, "cut at {cut}");
        }
        assert_eq!(walk(&good[..good.len() - 2]).0.len(), 1);
        assert_eq!(walk(&[0xff, 0xff, 0xff, 0xff]), (Vec::new(), false));
        assert_eq!(walk(&[]), (Vec::new(), false));
        assert_eq!(
            walk(&[0, 0, 0, 0]),
            (Vec::new(), true),
            "an empty map is whole"
        );
        assert!(walk(&good).1);
        let mut lying = good.clone();
        lying[4] = 200; // first name length far past the end
        assert_eq!(walk(&lying), (Vec::new(), false));
        let mut walk = entries(&lying);
        assert_eq!(walk.next(), None);
        assert_eq!(walk.next(), None, "a damaged walk stays stopped");
    }
}
