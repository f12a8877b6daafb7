//! Reads JSON into the compact [`Value`] tree of [`crate::tree`] while noting every object key
//! that appears twice.
//!
//! `serde_json` keeps the last copy of a repeated key without a word. In a policy that is a
//! silent override: a second `"globex": {}` in the consent table would drop the tenant's
//! opt-out, a second `"enabled": true` would undo a kill switch. So the document is read with
//! this visitor instead, which keeps the last copy as `serde_json` does and reports the place of
//! each repeat; [`crate::document::parse`] turns those into errors, refusing the policy.
//!
//! The place is kept as a chain of borrowed steps on the stack and formatted only for a
//! repeat, so reading costs what `serde_json`'s own `Value` reader costs. Nesting depth stays
//! bounded by `serde_json`'s recursion limit, which applies to any visitor.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use bumpalo::Bump;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::tree::{Number, Object, Value};

use crate::document::{field, index};
use crate::error::MAX_LISTED_ERRORS;

/// The repeated keys of a document: the places of the first [`MAX_LISTED_ERRORS`], in
/// document order, and how many more there are. A place is formatted from the whole path, so
/// listing them all would let a small document with a long key demand gigabytes.
#[derive(Debug, Default)]
pub struct Repeats {
    pub places: Vec<String>,
    pub unlisted: usize,
}

impl Repeats {
    fn note(&mut self, at: &Step) {
        if self.places.len() < MAX_LISTED_ERRORS {
            self.places.push(at.place());
        } else {
            self.unlisted += 1;
        }
    }
}

/// Parses `json` into a tree whose objects, lists and unescaped strings are allocated in
/// `arena`; also returns where keys repeat.
pub fn parse<'a>(
    json: &'a str,
    arena: &'a Bump,
) -> Result<(Value<'a>, Repeats), serde_json::Error> {
    let repeats = RefCell::new(Repeats::default());
    let mut de = serde_json::Deserializer::from_str(json);
    let value = Reader {
        at: &Step::Root,
        repeats: &repeats,
        stacks: &RefCell::default(),
        arena,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok((value, repeats.into_inner()))
}

/// Where a value sits: its parent's place and the key or index under it.
enum Step<'a> {
    Root,
    Key(&'a Step<'a>, &'a str),
    Index(&'a Step<'a>, usize),
}

impl Step<'_> {
    /// The place in the format every policy error uses (`flags[0].rules[2]`).
    fn place(&self) -> String {
        match self {
            Step::Root => String::new(),
            Step::Key(parent, key) => field(&parent.place(), key),
            Step::Index(parent, i) => index(&parent.place(), *i),
        }
    }
}

#[derive(Clone, Copy)]
struct Reader<'a, 'r, 'de> {
    at: &'a Step<'a>,
    repeats: &'r RefCell<Repeats>,
    stacks: &'r RefCell<Stacks<'de>>,
    arena: &'de Bump,
}

type Member<'de> = (&'de str, Value<'de>);

/// The members and items of the objects and lists being read, innermost last, shared by the
/// whole document: a finished object or list moves its own off the top into the arena, in one
/// slice of its exact size, instead of growing a vector of its own (two or three allocations
/// each, for each of a consent table's tens of thousands).
#[derive(Default)]
struct Stacks<'de> {
    members: Vec<Member<'de>>,
    items: Vec<Value<'de>>,
}

impl<'de> DeserializeSeed<'de> for Reader<'_, '_, 'de> {
    type Value = Value<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Reader<'_, '_, 'de> {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value<'de>, E> {
        // JSON text has no NaN or infinity, so this is always a number.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::String(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::String(self.arena.alloc_str(v)))
    }

    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        let base = self.stacks.borrow().items.len();
        loop {
            let at = Step::Index(self.at, self.stacks.borrow().items.len() - base);
            let reader = Reader { at: &at, ..self };
            match seq.next_element_seed(reader)? {
                Some(item) => self.stacks.borrow_mut().items.push(item),
                None => {
                    let mut stacks = self.stacks.borrow_mut();
                    let items = self.arena.alloc_slice_fill_iter(stacks.items.drain(base..));
                    return Ok(Value::Array(items));
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        let mut members = Members {
            base: self.stacks.borrow().members.len(),
            index: None,
        };
        while let Some(key) = map.next_key_seed(Key(self.arena))? {
            let at = Step::Key(self.at, key);
            let value = map.next_value_seed(Reader { at: &at, ..self })?;
            if members.put(&mut self.stacks.borrow_mut().members, key, value) {
                self.repeats.borrow_mut().note(&at);
            }
        }
        let mut stacks = self.stacks.borrow_mut();
        let list = self
            .arena
            .alloc_slice_fill_iter(stacks.members.drain(members.base..));
        Ok(Value::Object(Object::from_distinct(list)))
    }
}

/// An object key, borrowed from the text unless it had escapes to undo (then copied into the
/// arena; serde's own `Cow<str>` always copies).
struct Key<'de>(&'de Bump);

impl<'de> DeserializeSeed<'de> for Key<'de> {
    type Value = &'de str;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'de> {
    type Value = &'de str;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(v)
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.alloc_str(v))
    }
}

/// An object's members as they are read (on [`Stacks::members`], from `base`): a key that
/// comes again replaces its value in place.
struct Members {
    base: usize,
    /// Past [`Members::SCANNED`] members: a key's hash → where the first key with that hash
    /// sits, so a table of ten thousand tenants is not scanned for each. Dropped with the
    /// object; the tree keeps only the list.
    index: Option<(RandomState, KeyIndex)>,
}

/// A key's hash → where the first key with that hash sits.
type KeyIndex = HashMap<u64, usize, BuildHasherDefault<Prehashed>>;

/// The index's keys are already hashes, keyed by the index's own `RandomState` (so a document
/// cannot be written to make its keys collide): the table uses them as they are instead of
/// hashing them a second time.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Members {
    /// Up to this many members a key is looked for by scanning: most objects in a policy.
    const SCANNED: usize = 16;

    /// Adds a member, or, for a key that is already a member, replaces its value and returns
    /// `true`: a repeat.
    fn put<'de>(&mut self, stack: &mut Vec<Member<'de>>, key: &'de str, value: Value<'de>) -> bool {
        let list = stack.get_mut(self.base..).unwrap_or_default();
        if self.index.is_none() && list.len() >= Self::SCANNED {
            let state = RandomState::new();
            let mut index = HashMap::with_capacity_and_hasher(list.len() * 2, <_>::default());
            for (i, (k, _)) in list.iter().enumerate() {
                index.entry(state.hash_one(*k)).or_insert(i);
            }
            self.index = Some((state, index));
        }
        let scan = |list: &[Member]| list.iter().position(|(k, _)| *k == key);
        let at = match &mut self.index {
            None => scan(list),
            Some((state, index)) => {
                let next = list.len();
                match *index.entry(state.hash_one(key)).or_insert(next) {
                    i if i == next => None,
                    i if list.get(i).is_some_and(|(k, _)| *k == key) => Some(i),
                    // Another key with this hash: rare enough to scan for.
                    _ => scan(list),
                }
            }
        };
        match at.and_then(|i| list.get_mut(i)) {
            Some((_, slot)) => {
                *slot = value;
                true
            }
            None => {
                stack.push((key, value));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses with an arena of its own, leaked: a test's trees are small.
    fn parse(json: &str) -> Result<(Value<'_>, Repeats), serde_json::Error> {
        super::parse(json, Box::leak(Box::new(Bump::new())))
    }

    #[test]
    fn reads_what_serde_json_reads() {
        let text =
            r#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c\"d": 18446744073709551615}"#;
        let (value, repeats) = parse(text).unwrap();
        assert_eq!(
            serde_json::to_value(&value).unwrap(),
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
        assert!(repeats.places.is_empty() && repeats.unlisted == 0);
    }

    #[test]
    fn every_repeated_key_is_placed() {
        let text = r#"{"x": 1, "flags": [{"k": 1}, {"k": 2, "k": 3}], "x": 2,
                      "t": {"a b": {}, "a b": {}, "a b": {}}}"#;
        let (value, repeats) = parse(text).unwrap();
        assert_eq!(
            repeats.places,
            ["flags[1].k", "x", "t[\"a b\"]", "t[\"a b\"]"],
            "each repeat once, where it appears"
        );
        assert_eq!(
            value.get("x"),
            Some(&Value::Number(2.into())),
            "the value read is serde_json's: the last copy"
        );
        assert_eq!(
            value.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["x", "flags", "t"],
            "where the first copy was"
        );
    }

    #[test]
    fn large_objects_find_repeats_through_their_index() {
        // Past the scanned size, at the start, the middle and the end of a long object.
        let mut members: Vec<String> = (0..40).map(|i| format!("\"k{i}\": {i}")).collect();
        members.insert(20, "\"k0\": \"again\"".to_string());
        members.push("\"k39\": \"last\"".to_string());
        members.push("\"k17\": null".to_string());
        let text = format!("{{\"t\": {{{}}}}}", members.join(","));
        let (value, repeats) = parse(&text).unwrap();
        assert_eq!(repeats.places, ["t.k0", "t.k39", "t.k17"]);
        let t = value.get("t").and_then(Value::as_object).unwrap();
        assert_eq!(t.len(), 40);
        assert_eq!(t.keys().next(), Some("k0"));
        assert_eq!(t.get("k0").and_then(Value::as_str), Some("again"));
        assert_eq!(t.get("k39").and_then(Value::as_str), Some("last"));
        assert_eq!(t.get("k17"), Some(&Value::Null));
        assert_eq!(t.get("k18"), Some(&Value::Number(18.into())));
    }

    #[test]
    fn repeats_past_the_listed_ones_are_only_counted_and_long_keys_are_cut() {
        // A 1 MB key over thousands of repeats: listing each repeat's whole place would take
        // gigabytes.
        let key = "k".repeat(1_000_000);
        let body = vec!["\"a\":0"; 5_000].join(",");
        let (_, repeats) = parse(&format!("{{\"{key}\": {{{body}}}}}")).unwrap();
        assert_eq!(repeats.places.len(), MAX_LISTED_ERRORS);
        assert_eq!(repeats.unlisted, 4_999 - MAX_LISTED_ERRORS);
        assert!(
            repeats.places[0].len() < 300,
            "{}",
            &repeats.places[0][..300]
        );
        assert!(
            repeats.places[0].ends_with("… (1000000 bytes)\"].a"),
            "{}",
            repeats.places[0]
        );
    }

    #[test]
    fn bad_json_and_trailing_text_are_errors() {
        assert!(parse("{\"a\": ").is_err());
        assert!(parse("{} x").is_err());
        assert!(
            parse(&"[".repeat(200)).is_err(),
            "the recursion limit holds"
        );
    }
}
