//! Header maps as Envoy keeps them: ordered, names compared without regard to ASCII case,
//! values as raw bytes (Envoy passes a header's bytes through unchanged, UTF-8 or not).
//!
//! The mutating operations follow Envoy's proxy-wasm host: names are lowercased on the way
//! in (`Http::LowerCaseString`), `replace` is Envoy's `setCopy` (the first entry of that name
//! takes the new value, later ones are dropped; a missing name is appended), and `remove`
//! drops every entry of that name.

/// One header map (request headers, response headers, trailers, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl HeaderMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// A map with these entries, names lowercased as Envoy's codecs deliver them.
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Self {
        let mut map = Self::new();
        for (name, value) in pairs {
            map.add(name.as_ref(), value.as_ref());
        }
        map
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry in order, as raw bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(name, value)| (name.as_slice(), value.as_slice()))
    }

    /// Entries whose name and value are both UTF-8, in order (a convenience for assertions).
    pub fn iter_str(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().filter_map(|(name, value)| {
            Some((
                std::str::from_utf8(name).ok()?,
                std::str::from_utf8(value).ok()?,
            ))
        })
    }

    /// The first value of `name`, as Envoy's `proxy_get_header_map_value` returns it.
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        let name = name.as_ref();
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// The first value of `name` if it is UTF-8.
    pub fn get_str(&self, name: impl AsRef<[u8]>) -> Option<&str> {
        self.get(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all(&self, name: impl AsRef<[u8]>) -> Vec<&[u8]> {
        let name = name.as_ref();
        self.entries
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
            .collect()
    }

    pub fn contains(&self, name: impl AsRef<[u8]>) -> bool {
        self.get(name).is_some()
    }

    /// Names (lowercase, lossily decoded) of every entry, in order, duplicates kept.
    pub fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
            .collect()
    }

    /// Appends an entry (`proxy_add_header_map_value`).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        self.entries
            .push((name.to_ascii_lowercase(), value.to_vec()));
    }

    /// Envoy's `setCopy` (`proxy_replace_header_map_value`).
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        let mut seen = false;
        self.entries.retain_mut(|(n, v)| {
            if !n.eq_ignore_ascii_case(name) {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            *v = value.to_vec();
            true
        });
        if !seen {
            self.add(name, value);
        }
    }

    /// Drops every entry of `name` (`proxy_remove_header_map_value`); absent names are fine.
    pub fn remove(&mut self, name: &[u8]) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The proxy-wasm wire format: u32 count, then a (name length, value length) u32 pair per
    /// entry, then each name and value followed by a NUL byte. All integers little-endian.
    pub fn serialize(&self) -> Vec<u8> {
        let size = 4 + self
            .entries
            .iter()
            .map(|(n, v)| 8 + n.len() + v.len() + 2)
            .sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&len_u32(self.entries.len()).to_le_bytes());
        for (name, value) in &self.entries {
            out.extend_from_slice(&len_u32(name.len()).to_le_bytes());
            out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
        }
        for (name, value) in &self.entries {
            out.extend_from_slice(name);
            out.push(0);
            out.extend_from_slice(value);
            out.push(0);
        }
        out
    }

    /// Parses the wire format; `None` if the bytes are not a well-formed map. An empty buffer
    /// is an empty map (what the SDK sends for an empty list).
    pub fn deserialize(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() {
            return Some(Self::new());
        }
        let count = read_u32(bytes, 0)? as usize;
        let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
        if data > bytes.len() {
            return None;
        }
        let mut map = Self::new();
        for i in 0..count {
            let name_len = read_u32(bytes, 4 + i * 8)? as usize;
            let value_len = read_u32(bytes, 8 + i * 8)? as usize;
            let name = bytes.get(data..data.checked_add(name_len)?)?.to_vec();
            data = data.checked_add(name_len + 1)?;
            let value = bytes.get(data..data.checked_add(value_len)?)?.to_vec();
            data = data.checked_add(value_len + 1)?;
            // Kept as sent: Envoy lowercases on add/replace, and so does `add` here.
            map.entries.push((name.to_ascii_lowercase(), value));
        }
        Some(map)
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// Lengths in the wire format are u32; a map this host builds never comes near 4 GiB.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_raw_bytes() {
        let map = HeaderMap::from_pairs(&[
            (b"X-A".as_slice(), b"1".as_slice()),
            (b"x-b", b"\xff\x00z"),
            (b"x-a", b""),
        ]);
        let back = HeaderMap::deserialize(&map.serialize());
        assert_eq!(back, Some(map.clone()));
        assert_eq!(map.get("x-a"), Some(b"1".as_slice()));
        assert_eq!(map.get_all("X-A").len(), 2);
    }

    #[test]
    fn replace_is_envoy_set_copy() {
        let mut map = HeaderMap::from_pairs(&[("a", "1"), ("b", "2"), ("a", "3")]);
        map.replace(b"A", b"9");
        assert_eq!(map.iter_str().collect::<Vec<_>>(), [("a", "9"), ("b", "2")]);
        map.replace(b"c", b"4");
        assert_eq!(map.get_str("c"), Some("4"));
        map.remove(b"a");
        assert!(!map.contains("a"));
    }

    #[test]
    fn malformed_maps_are_rejected() {
        assert_eq!(HeaderMap::deserialize(&[1, 0, 0, 0]), None);
        assert_eq!(
            HeaderMap::deserialize(&[1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(
            HeaderMap::deserialize(&[0, 0, 0, 0]),
            Some(HeaderMap::new())
        );
    }
}
