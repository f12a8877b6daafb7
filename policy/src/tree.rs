//! A JSON document as the policy reader holds it: objects as ordered slices of (key, value)
//! pairs, lists as boxed slices, and strings borrowed from the document's text where they
//! need no unescaping (nearly all of a policy's keys and names).
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

use std::borrow::Cow;

pub use serde_json::Number;

/// One JSON value, its strings borrowed from the text it was read from where they can be.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Box<[Value<'a>]>),
    Object(Object<'a>),
}

/// A JSON object: its members in document order. A key appears once (the reader keeps the
/// last copy of a repeated key at the place of the first, as `serde_json` does).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a>(Box<[(Cow<'a, str>, Value<'a>)]>);

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

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value<'a>> {
        match self {
            Value::Object(map) => map.get_mut(key),
            _ => None,
        }
    }
}

impl<'a> Object<'a> {
    /// An object from members whose keys are known to be distinct.
    pub(crate) fn from_distinct(members: Vec<(Cow<'a, str>, Value<'a>)>) -> Self {
        Object(members.into_boxed_slice())
    }

    /// Where `key` is among the members, for `get_mut` and `remove`. `get` keeps its own
    /// `find`: the reader calls it in dozens of places, and through this it added 1.9 KB to
    /// the module.
    fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| &**k == key)
    }

    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.0.iter().find(|(k, _)| &**k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value<'a>> {
        let at = self.position(key)?;
        self.0.get_mut(at).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`: in place if it is there, else last.
    pub fn insert(&mut self, key: &str, value: Value<'a>) {
        if let Some(slot) = self.get_mut(key) {
            *slot = value;
            return;
        }
        let mut members = std::mem::take(&mut self.0).into_vec();
        members.push((Cow::Owned(key.to_string()), value));
        self.0 = members.into_boxed_slice();
    }

    pub fn remove(&mut self, key: &str) -> Option<Value<'a>> {
        let at = self.position(key)?;
        let mut members = std::mem::take(&mut self.0).into_vec();
        let (_, value) = members.remove(at);
        self.0 = members.into_boxed_slice();
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| &**k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value<'a>)> {
        self.into_iter()
    }
}

impl<'o, 'a> IntoIterator for &'o Object<'a> {
    type Item = (&'o str, &'o Value<'a>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'o, (Cow<'a, str>, Value<'a>)>,
        fn(&'o (Cow<'a, str>, Value<'a>)) -> (&'o str, &'o Value<'a>),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (&**k, v))
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

    fn object<'a>(pairs: &[(&'a str, Value<'a>)]) -> Object<'a> {
        Object::from_distinct(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn small_values_stay_small() {
        // The point of the tree: less than half of serde_json's `Value` with `preserve_order`,
        // and no hash table per object.
        assert!(std::mem::size_of::<Value>() <= 32);
        assert!(std::mem::size_of::<Value>() * 2 <= std::mem::size_of::<serde_json::Value>());
        assert!(std::mem::size_of::<(Cow<str>, Value)>() <= 56);
    }

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_text() {
        let text = r#"{"plain": "value", "esc\u0061ped": "a\"b"}"#;
        let (tree, _) = crate::repeated_keys::parse(text).unwrap();
        let map = tree.as_object().unwrap();
        let borrowed = |s: &Cow<str>| matches!(s, Cow::Borrowed(_));
        assert!(borrowed(&map.0[0].0));
        assert!(matches!(&map.0[0].1, Value::String(s) if borrowed(s) && s == "value"));
        assert!(!borrowed(&map.0[1].0) && map.0[1].0 == "escaped");
        assert!(matches!(&map.0[1].1, Value::String(s) if !borrowed(s) && s == "a\"b"));
    }

    #[test]
    fn objects_keep_order_and_replace_in_place() {
        let mut map = object(&[("b", Value::Bool(true)), ("a", Value::Null)]);
        map.insert("b", Value::Bool(false));
        map.insert("c", Value::String("x".into()));
        assert_eq!(map.keys().collect::<Vec<_>>(), ["b", "a", "c"]);
        assert_eq!(map.get("b"), Some(&Value::Bool(false)));
        assert_eq!(map.remove("a"), Some(Value::Null));
        assert_eq!(map.remove("a"), None);
        assert_eq!(map.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert!(map.contains_key("c") && !map.contains_key("a") && map.len() == 2);
    }

    #[test]
    fn serializes_as_serde_json_does() {
        let text = r#"{"z":[1,-2,3.5,"q\"",null,true,{}],"a":{"k":"v"},"e":[]}"#;
        let (tree, _) = crate::repeated_keys::parse(text).unwrap();
        assert_eq!(serde_json::to_string(&tree).unwrap(), text);
    }
}
