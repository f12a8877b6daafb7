//! The header names switchyard owns besides everything under [`OWNED_PREFIX`], in the shape
//! that is cheapest to test against every request header.
//!
//! With the default settings every name switchyard sets is under the prefix, so the set is
//! empty and the test is the prefix alone. A policy that renames a header outside the prefix
//! adds it here; a request header of a length no such name has is then ruled out by one bit
//! test, before any comparison.

use crate::compile::OWNED_PREFIX;

#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedNames {
    /// Bit `n` set: some name has length `n` (bit 63: 63 or longer).
    lengths: u64,
    names: Vec<Box<str>>,
}

impl OwnedNames {
    /// From lower-case names; those under [`OWNED_PREFIX`] are covered by it and left out.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> OwnedNames {
        let mut owned = OwnedNames::default();
        for name in names {
            if name.starts_with(OWNED_PREFIX) || owned.names.iter().any(|n| &**n == name) {
                continue;
            }
            owned.lengths |= length_bit(name.len());
            owned.names.push(name.into());
        }
        owned
    }

    /// Whether switchyard owns this (lower-case) request header name.
    pub fn contains(&self, lowercase_name: &[u8]) -> bool {
        lowercase_name.starts_with(OWNED_PREFIX.as_bytes())
            || (self.lengths & length_bit(lowercase_name.len()) != 0
                && self.names.iter().any(|n| n.as_bytes() == lowercase_name))
    }
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_listed_names_are_owned() {
        let long = "x-a-header-name-of-more-than-sixty-three-bytes-for-the-last-bit-x";
        let owned = OwnedNames::new([
            "x-switchyard-cluster",
            "x-model-route",
            long,
            "x-model-route",
        ]);
        assert_eq!(
            owned.names.len(),
            2,
            "the prefixed name and the duplicate are left out"
        );
        for name in [
            "x-switchyard-cluster",
            "x-switchyard-anything",
            "x-model-route",
            long,
        ] {
            assert!(owned.contains(name.as_bytes()), "{name}");
        }
        let longer = format!("{long}y");
        for name in [
            "x-model-routf",
            "x-model-rout",
            "x-tenant-id",
            "",
            longer.as_str(),
        ] {
            assert!(!owned.contains(name.as_bytes()), "{name}");
        }
        assert!(!OwnedNames::new([]).contains(b"x-model-route"));
        assert!(
            owned.contains(b"x-switchyard-\xff"),
            "not UTF-8, but under the prefix"
        );
    }
}
