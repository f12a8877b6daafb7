//! A small set of lower-case header names in the shape that is cheapest to test every request
//! header against: a request header whose length no name has is ruled out by one bit test,
//! before any comparison (most request headers are neither read by a policy nor owned by
//! switchyard, and a comparison is a call into `memcmp`).

#[derive(Debug, Clone, Default)]
pub(crate) struct NameSet {
    /// Bit `n` set: some name has length `n` (bit 63: 63 or longer).
    lengths: u64,
    names: Vec<Box<str>>,
}

impl NameSet {
    /// Adds a name unless it is there already.
    pub fn insert(&mut self, name: &str) {
        if self.find(name.as_bytes()).is_none() {
            self.lengths |= length_bit(name.len());
            self.names.push(name.into());
        }
    }

    /// The set's own copy of this name, if it has it: a caller holding raw bytes gets text
    /// without decoding them.
    #[inline]
    pub fn find(&self, name: &[u8]) -> Option<&str> {
        if self.lengths & length_bit(name.len()) == 0 {
            return None;
        }
        self.names
            .iter()
            .find(|n| same_bytes(n.as_bytes(), name))
            .map(|n| &**n)
    }

    /// The names, in the order they were first inserted.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }
}

/// `a == b` for short byte strings such as header names, eight bytes at a time. The slice
/// comparison calls `memcmp`, which in wasm32-wasip1's libc compares byte by byte after the
/// call: several times dearer for names of 8 to 20 bytes, compared once per request header.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    // Whole words, then the last eight bytes (overlapping the words already compared).
    let mut at = 0;
    while at + 8 < n {
        if word(&a[at..]) != word(&b[at..]) {
            return false;
        }
        at += 8;
    }
    word(&a[n - 8..]) == word(&b[n - 8..])
}

/// Where `a` or `b` first stands in `bytes`. Eight bytes at a time until a word holds one (a
/// byte scan tests each byte twice: the path's query and fragment are looked for on every
/// request, about 270 wasm instructions for a 20-byte path).
#[inline]
pub(crate) fn find_either(bytes: &[u8], a: u8, b: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Whether a byte of `w` equals `byte`: a byte of `w ^ byte * ONES` is zero.
    let holds = |w: u64, byte: u8| {
        let x = w ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    };
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let w = word(bytes.get(at..).unwrap_or_default());
        if holds(w, a) || holds(w, b) {
            break;
        }
        at += 8;
    }
    let rest = bytes.get(at..)?;
    rest.iter().position(|&x| x == a || x == b).map(|i| at + i)
}

/// Eight bytes as one integer (zero for a shorter slice, which callers never pass).
#[inline]
fn word(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The first `?` or `#`, wherever it stands in or across the words, as a byte scan
        /// finds it; bytes that differ from them by one bit, and high bytes, are no match.
        #[test]
        fn find_either_finds_what_a_byte_scan_finds(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'?', b'#', b'>', b'"', b'\x7f', b'\xbf', b'\xa3', 0]),
                0..40,
            ),
        ) {
            let expected = bytes.iter().position(|&b| b == b'?' || b == b'#');
            proptest::prop_assert_eq!(find_either(&bytes, b'?', b'#'), expected);
        }
    }

    #[test]
    fn names_are_found_by_length_then_bytes() {
        let long = "x-a-header-name-of-more-than-sixty-three-bytes-for-the-last-bit-x";
        let mut set = NameSet::default();
        for name in ["x-model-route", long, "x-model-route", "cookie"] {
            set.insert(name);
        }
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            ["x-model-route", long, "cookie"],
            "the duplicate is left out"
        );
        for name in ["x-model-route", long, "cookie"] {
            assert_eq!(set.find(name.as_bytes()), Some(name));
        }
        let longer = format!("{long}y");
        for name in [
            "x-model-routf",
            "x-model-rout",
            "cookies",
            "",
            longer.as_str(),
        ] {
            assert_eq!(set.find(name.as_bytes()), None, "{name}");
        }
        assert_eq!(NameSet::default().find(b""), None);
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let names: Vec<Vec<u8>> = (0..=18)
            .flat_map(|len| {
                let base = vec![b'a'; len];
                let mut variants = vec![base.clone()];
                for at in 0..len {
                    let mut v = base.clone();
                    v[at] = b'b';
                    variants.push(v);
                }
                variants
            })
            .collect();
        for a in &names {
            for b in &names {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }
}
