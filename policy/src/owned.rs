//! The header names switchyard owns besides everything under [`OWNED_PREFIX`], in the shape
//! that is cheapest to test against every request header.
//!
//! With the default settings every name switchyard sets is under the prefix, so the set is
//! empty and the test is the prefix alone. A policy that renames a header outside the prefix
//! adds it here; a request header of a length no such name has is then ruled out by one bit
//! test, before any comparison.

use crate::compile::OWNED_PREFIX;
use crate::names::{same_bytes, NameSet};

#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedNames {
    names: NameSet,
}

impl OwnedNames {
    /// From lower-case names; those under [`OWNED_PREFIX`] are covered by it and left out.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> OwnedNames {
        let mut owned = OwnedNames::default();
        for name in names.into_iter().filter(|n| !n.starts_with(OWNED_PREFIX)) {
            owned.names.insert(name);
        }
        owned
    }

    /// Whether switchyard owns this (lower-case) request header name.
    #[inline]
    pub fn contains(&self, lowercase_name: &[u8]) -> bool {
        has_owned_prefix(lowercase_name) || self.names.find(lowercase_name).is_some()
    }
}

/// `name.starts_with(OWNED_PREFIX)`, compared a word at a time: the test runs on every request
/// header, many of which start with `x-`, and the slice comparison is a call into `memcmp`
/// for each name at least as long as the prefix.
fn has_owned_prefix(name: &[u8]) -> bool {
    let prefix = OWNED_PREFIX.as_bytes();
    name.get(..prefix.len())
        .is_some_and(|head| same_bytes(head, prefix))
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
            owned.names.iter().count(),
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
