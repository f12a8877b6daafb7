//! A JSON document as the policy reader holds it: objects as ordered slices of (key, value)
//! pairs, lists as slices, and strings borrowed from the document's text where they need no
//! unescaping (nearly all of a policy's keys and names). Everything else is allocated in an
//! arena ([`bumpalo::Bump`]) that the reader drops whole once it has read the tree: a consent
//! table's tens of thousands of small objects cost a pointer bump each instead of an
//! allocation, and nothing to free one by one (freeing them was a fifth of reading a large
//! policy, on every worker and every consent change).
//!
//! `serde_json`'s `Value` with `preserve_order` (which the reader needs: variations, splits
//! and errors follow the document's order) gives every object an index map, a hash table
//! beside the entries, both with room for at least three: about 400 bytes for a one-key
//! object on a 64-bit host, where this tree holds it in 56 (and no allocation for the key),
//! and 80 bytes per list item where this takes 32. A consent table of ten thousand tenants made that the largest cost of
//! loading a policy (`bench/README.md`, "Memory"), and in Envoy every worker's Wasm VM keeps
//! the peak of its load for good: linear memory never shrinks.
//!
//! Lookups by key scan the pairs: a policy's objects with fixed fields are small, and its
//! large ones (tenants, segments, variations) are read in order, not searched.

pub use serde_json::Number;

/// One JSON value, its strings borrowed from the text it was read from where they can be,
/// and from the reader's arena where they had escapes to undo. Nothing in it needs dropping.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(&'a str),
    Array(&'a [Value<'a>]),
    Object(Object<'a>),
}

/// A JSON object: its members in document order. A key appears once (the reader keeps the
/// last copy of a repeated key at the place of the first, as `serde_json` does).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Object<'a>(&'a [(&'a str, Value<'a>)]);

impl<'a> Value<'a> {
    pub fn as_array(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// The member `key` of an object (`None` for anything else).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.as_object()?.get(key)
    }
}

impl<'a> Object<'a> {
    /// An object from members whose keys are known to be distinct.
    pub(crate) fn from_distinct(members: &'a [(&'a str, Value<'a>)]) -> Self {
        Object(members)
    }

    pub fn get(&self, key: &str) -> Option<&'a Value<'a>> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &'a str> {
        self.0.iter().map(|(k, _)| *k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value<'a>)> {
        self.into_iter()
    }
}

impl<'o, 'a> IntoIterator for &'o Object<'a> {
    type Item = (&'o str, &'o Value<'a>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'o, (&'a str, Value<'a>)>,
        fn(&'o (&'a str, Value<'a>)) -> (&'o str, &'o Value<'a>),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (*k, v))
    }
}

/// Written as `serde_json` writes its own `Value`, members in order: the tests compare what
/// the reader holds with what `serde_json` reads.
#[cfg(test)]
mod serialize {
    use super::Value;
    use serde::ser::{Serialize, SerializeMap, Serializer};

    impl Serialize for Value<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Value::Null => s.serialize_unit(),
                Value::Bool(b) => s.serialize_bool(*b),
                Value::Number(n) => n.serialize(s),
                Value::String(text) => s.serialize_str(text),
                Value::Array(items) => s.collect_seq(items.iter()),
                Value::Object(map) => {
                    let mut out = s.serialize_map(Some(map.len()))?;
                    for (k, v) in map {
                        out.serialize_entry(k, v)?;
                    }
                    out.end()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_stay_small() {
        // The point of the tree: less than half of serde_json's `Value` with `preserve_order`,
        // and no hash table per object.
        assert!(std::mem::size_of::<Value>() <= 32);
        assert!(std::mem::size_of::<Value>() * 2 <= std::mem::size_of::<serde_json::Value>());
        assert!(std::mem::size_of::<(&str, Value)>() <= 48);
        assert!(
            !std::mem::needs_drop::<Value>(),
            "the arena drops nothing one by one"
        );
    }

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_text() {
        let text = r#"{"plain": "value", "esc\u0061ped": "a\"b"}"#;
        let arena = bumpalo::Bump::new();
        let (tree, _) = crate::repeated_keys::parse(text, &arena).unwrap();
        let map = tree.as_object().unwrap();
        let in_text = |s: &str| text.as_bytes().as_ptr_range().contains(&s.as_ptr());
        assert!(in_text(map.0[0].0));
        assert!(matches!(map.0[0].1, Value::String(s) if in_text(s) && s == "value"));
        assert!(!in_text(map.0[1].0) && map.0[1].0 == "escaped");
        assert!(matches!(map.0[1].1, Value::String(s) if !in_text(s) && s == "a\"b"));
    }

    #[test]
    fn objects_keep_order() {
        let members = [("b", Value::Bool(true)), ("a", Value::Null)];
        let map = Object::from_distinct(&members);
        assert_eq!(map.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(map.get("b"), Some(&Value::Bool(true)));
        assert!(map.contains_key("a") && !map.contains_key("c") && map.len() == 2);
    }

    #[test]
    fn serializes_as_serde_json_does() {
        let text = r#"{"z":[1,-2,3.5,"q\"",null,true,{}],"a":{"k":"v"},"e":[]}"#;
        let arena = bumpalo::Bump::new();
        let (tree, _) = crate::repeated_keys::parse(text, &arena).unwrap();
        assert_eq!(serde_json::to_string(&tree).unwrap(), text);
    }
}
