//! A plugin configuration given as `google.protobuf.Struct` reaches the filter as the Struct's
//! serialized protobuf bytes (Envoy hands over only `StringValue` and `BytesValue` unwrapped).
//! This turns those bytes back into the JSON text of the policy, so a config author can write
//! the policy as plain YAML in the Envoy configuration.
//!
//! Only the three well-known messages are read (`Struct`, `Value`, `ListValue`), strictly: an
//! unknown field, a truncated length or a string that is not UTF-8 is an error that names the
//! byte offset, and nothing is guessed. Two things do not survive the trip through protobuf,
//! and the README says so:
//! - **key order**: a Struct is a protobuf map, which keeps no order, so keys come out sorted
//!   by name (the same bytes always give the same policy);
//! - **integers**: every number is a double; a whole number within ±2^53 is written as an
//!   integer, so `weight: 5` arrives as `5`, not `5.0`.

use switchyard_policy::push_json_string;

/// Protobuf's own default nesting limit: deeper input is refused, never a stack overflow.
const MAX_DEPTH: usize = 100;

/// Whole doubles up to this magnitude are exact integers.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0; // 2^53

/// The JSON text of a serialized `google.protobuf.Struct`, or what is wrong with the bytes.
pub fn to_json(bytes: &[u8]) -> Result<String, String> {
    let mut reader = Reader { bytes, at: 0 };
    let mut json = String::with_capacity(bytes.len() + bytes.len() / 4);
    reader.read_struct(bytes.len(), 0, &mut json)?;
    Ok(json)
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

/// Protobuf wire types this decoder meets.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;

impl<'b> Reader<'b> {
    fn error(&self, message: impl std::fmt::Display) -> String {
        format!("{message} at byte {}", self.at)
    }

    /// A varint within `end`, the end of the message it belongs to: like every read here,
    /// it never takes bytes that follow its message.
    fn varint(&mut self, end: usize) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(..end).and_then(|b| b.get(self.at)) else {
                return Err(self.error("truncated varint"));
            };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    /// The next field's (number, wire type), or `None` at `end`.
    fn tag(&mut self, end: usize) -> Result<Option<(u64, u64)>, String> {
        if self.at >= end {
            return Ok(None);
        }
        let tag = self.varint(end)?;
        Ok(Some((tag >> 3, tag & 7)))
    }

    /// The end offset of a length-delimited field starting here, within `end`.
    fn length(&mut self, end: usize) -> Result<usize, String> {
        let len = self.varint(end)?;
        usize::try_from(len)
            .ok()
            .and_then(|len| self.at.checked_add(len))
            .filter(|&field_end| field_end <= end)
            .ok_or_else(|| self.error(format!("length {len} runs past the end of its message")))
    }

    /// A string field's text, borrowed from the input.
    fn string(&mut self, end: usize) -> Result<&'b str, String> {
        let field_end = self.length(end)?;
        let bytes: &'b [u8] = self.bytes;
        let text = std::str::from_utf8(&bytes[self.at..field_end])
            .map_err(|_| self.error("a string that is not UTF-8"))?;
        self.at = field_end;
        Ok(text)
    }

    fn unexpected(&self, message: &str, field: u64, wire: u64) -> String {
        self.error(format!(
            "unexpected field {field} (wire type {wire}) in a {message}"
        ))
    }

    fn deeper(&self, depth: usize) -> Result<usize, String> {
        if depth >= MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(depth + 1)
    }

    /// `Struct { map<string, Value> fields = 1; }`, written with its keys sorted; a repeated
    /// key keeps its last value, as protobuf's own parser does.
    fn read_struct(&mut self, end: usize, depth: usize, out: &mut String) -> Result<(), String> {
        let depth = self.deeper(depth)?;
        // (key, the value's JSON), in wire order.
        let mut fields: Vec<(&str, String)> = Vec::new();
        while let Some((field, wire)) = self.tag(end)? {
            if (field, wire) != (1, LEN) {
                return Err(self.unexpected("google.protobuf.Struct", field, wire));
            }
            let entry_end = self.length(end)?;
            let (mut key, mut value) = ("", String::from("null"));
            while let Some((field, wire)) = self.tag(entry_end)? {
                match (field, wire) {
                    (1, LEN) => key = self.string(entry_end)?,
                    (2, LEN) => {
                        let value_end = self.length(entry_end)?;
                        value.clear();
                        self.read_value(value_end, depth, &mut value)?;
                    }
                    _ => return Err(self.unexpected("Struct entry", field, wire)),
                }
            }
            fields.push((key, value));
        }
        // Stable: equal keys stay in wire order, and the last of each run wins.
        let fields = sorted_by_key(fields);
        out.push('{');
        let mut first = true;
        for (i, (key, value)) in fields.iter().enumerate() {
            if fields.get(i + 1).is_some_and(|next| next.0 == *key) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            push_json_string(out, key);
            out.push(':');
            out.push_str(value);
        }
        out.push('}');
        Ok(())
    }

    /// `Value { oneof kind { NullValue null_value = 1; double number_value = 2;
    /// string string_value = 3; bool bool_value = 4; Struct struct_value = 5;
    /// ListValue list_value = 6; } }`; an empty Value is `null`, and of a repeated kind the
    /// last wins.
    fn read_value(&mut self, end: usize, depth: usize, out: &mut String) -> Result<(), String> {
        let depth = self.deeper(depth)?;
        let start = out.len();
        out.push_str("null");
        while let Some((field, wire)) = self.tag(end)? {
            out.truncate(start);
            match (field, wire) {
                (1, VARINT) => {
                    self.varint(end)?;
                    out.push_str("null");
                }
                (2, FIXED64) => self.number(end, out)?,
                (3, LEN) => push_json_string(out, self.string(end)?),
                (4, VARINT) => out.push_str(if self.varint(end)? != 0 {
                    "true"
                } else {
                    "false"
                }),
                (5, LEN) => {
                    let field_end = self.length(end)?;
                    self.read_struct(field_end, depth, out)?;
                }
                (6, LEN) => {
                    let field_end = self.length(end)?;
                    self.read_list(field_end, depth, out)?;
                }
                _ => return Err(self.unexpected("google.protobuf.Value", field, wire)),
            }
        }
        Ok(())
    }

    /// `ListValue { repeated Value values = 1; }`
    fn read_list(&mut self, end: usize, depth: usize, out: &mut String) -> Result<(), String> {
        let depth = self.deeper(depth)?;
        out.push('[');
        let mut first = true;
        while let Some((field, wire)) = self.tag(end)? {
            if (field, wire) != (1, LEN) {
                return Err(self.unexpected("google.protobuf.ListValue", field, wire));
            }
            let value_end = self.length(end)?;
            if !first {
                out.push(',');
            }
            first = false;
            self.read_value(value_end, depth, out)?;
        }
        out.push(']');
        Ok(())
    }

    /// A double (eight bytes) within `end`.
    fn number(&mut self, end: usize, out: &mut String) -> Result<(), String> {
        let raw: [u8; 8] = self
            .bytes
            .get(..end)
            .and_then(|b| b.get(self.at..self.at.saturating_add(8)))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| self.error("truncated double"))?;
        let x = f64::from_le_bytes(raw);
        if !x.is_finite() {
            return Err(self.error("a number that is not finite"));
        }
        self.at += 8;
        // A whole double of at most 2^53 converts to i64 exactly; others in serde_json's
        // shortest round-trip form, which reads back as the same double.
        if x.fract() == 0.0 && x.abs() <= MAX_EXACT_INTEGER {
            out.push_str(itoa::Buffer::new().format(x as i64));
        } else {
            out.push_str(&serde_json::to_string(&x).unwrap_or_default());
        }
        Ok(())
    }
}

/// A stable merge sort by key. `slice::sort_by` would do, but adds about 4.5 KB of generic
/// code to the module (it has no other sort); this is O(n log n) for the 10,000-tenant
/// consent maps all the same.
fn sorted_by_key(mut fields: Vec<(&str, String)>) -> Vec<(&str, String)> {
    if fields.len() <= 1 {
        return fields;
    }
    let right = sorted_by_key(fields.split_off(fields.len() / 2));
    let left = sorted_by_key(fields);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut left, mut right) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => l.0 <= r.0, // ties take the left, earlier on the wire
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::struct_encode::*;
    use serde_json::Value;

    fn parse(json: &str) -> Result<Value, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    fn object(value: &Value) -> Result<&serde_json::Map<String, Value>, String> {
        value
            .as_object()
            .ok_or_else(|| format!("not an object: {value}"))
    }

    /// JSON → Struct bytes → JSON again.
    fn round_trip(json: &str) -> Result<Value, String> {
        parse(&to_json(&encode_struct(object(&parse(json)?)?))?)
    }

    #[test]
    fn the_example_policy_survives_the_trip_with_sorted_keys() -> Result<(), String> {
        let text = include_str!("../../examples/support-copilot/policy.json");
        let original = parse(text)?;
        let decoded = round_trip(text)?;
        assert_eq!(decoded, original, "same values, integers stay integers");
        let keys: Vec<&String> = object(&decoded)?.keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(
            keys, sorted,
            "protobuf keeps no key order: keys come out sorted"
        );
        assert!(to_json(&encode_struct(object(&original)?))?.contains("\"weight\":5}"));
        Ok(())
    }

    #[test]
    fn every_value_kind_decodes() -> Result<(), String> {
        let decoded = round_trip(
            r#"{"n": null, "t": true, "f": false, "i": -3, "x": 0.25, "big": 1e300,
                "s": "é", "l": [1, "a", [], {}], "o": {"k": {"k": [null]}}}"#,
        )?;
        assert_eq!(decoded["n"], Value::Null);
        assert_eq!(decoded["t"], true);
        assert_eq!(decoded["i"], -3);
        assert_eq!(decoded["x"], 0.25);
        assert_eq!(decoded["big"], 1e300);
        assert_eq!(decoded["s"], "é");
        assert_eq!(decoded["l"], serde_json::json!([1, "a", [], {}]));
        assert_eq!(decoded["o"]["k"]["k"][0], Value::Null);
        Ok(())
    }

    #[test]
    fn damaged_bytes_are_errors_with_an_offset() -> Result<(), String> {
        // One top-level entry: every cut inside it leaves a length running past the end.
        let good = encode_struct(object(
            &serde_json::json!({"flags": [1, "v", {"k": true}]}),
        )?);
        for cut in 1..good.len() {
            let err = to_json(&good[..cut]).err().unwrap_or_default();
            assert!(
                err.contains(" at byte "),
                "a cut Struct must not decode: {err}"
            );
        }
        assert!(
            to_json(b"{\"version\": 1}").is_err(),
            "JSON text is not a Struct"
        );
        let mut not_utf8 = Vec::new();
        let mut entry = Vec::new();
        put_len(&mut entry, 1, b"\xff");
        put_len(&mut not_utf8, 1, &entry);
        assert!(to_json(&not_utf8)
            .err()
            .unwrap_or_default()
            .contains("not UTF-8"));
        let nan = [
            0x0a, 0x0e, 0x0a, 0x01, b'x', 0x12, 0x09, 0x11, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f,
        ];
        assert!(to_json(&nan)
            .err()
            .unwrap_or_default()
            .contains("not finite"));
        assert_eq!(to_json(&[])?, "{}");
        // A value whose double or varint runs past the end of its Value message: the bytes
        // that follow the message are not the value's, even when there are enough of them.
        let past_their_message: [&[u8]; 2] = [
            &[
                0x0a, 0x08, 0x0a, 0x01, b'a', 0x12, 0x03, 0x11, 0, 0, // 2 of the double's 8
                0, 0, 0, 0, 0xf0, 0x3f,
            ],
            &[
                0x0a, 0x07, 0x0a, 0x01, b'a', 0x12, 0x02, 0x20,
                0x80, // the bool's varint goes on
                0x01,
            ],
        ];
        for bytes in past_their_message {
            let err = to_json(bytes).err().unwrap_or_default();
            assert!(err.contains("truncated"), "{bytes:?}: {err}");
        }
        Ok(())
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut value = encode_value(&Value::Null);
        for _ in 0..200 {
            let mut list = Vec::new();
            put_len(&mut list, 1, &value);
            let mut wrapped = Vec::new();
            put_len(&mut wrapped, 6, &list);
            value = wrapped;
        }
        let mut entry = Vec::new();
        put_len(&mut entry, 1, b"deep");
        put_len(&mut entry, 2, &value);
        let mut doc = Vec::new();
        put_len(&mut doc, 1, &entry);
        assert!(to_json(&doc)
            .err()
            .unwrap_or_default()
            .contains("nested deeper than 100"));
    }

    #[test]
    fn keys_are_sorted_stably() {
        let fields: Vec<(&str, String)> =
            [("b", "1"), ("a", "2"), ("c", "3"), ("a", "4"), ("b", "5")]
                .iter()
                .map(|(k, v)| (*k, v.to_string()))
                .collect();
        let sorted: Vec<String> = sorted_by_key(fields)
            .into_iter()
            .map(|(k, v)| format!("{k}{v}"))
            .collect();
        assert_eq!(sorted, ["a2", "a4", "b1", "b5", "c3"]);
        let names: Vec<String> = (0..10_000)
            .map(|i| format!("t{}", (i * 7919) % 10_000))
            .collect();
        let many: Vec<(&str, String)> = names.iter().map(|k| (k.as_str(), String::new())).collect();
        let keys: Vec<&str> = sorted_by_key(many).into_iter().map(|(k, _)| k).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() -> Result<(), String> {
        let mut doc = Vec::new();
        for v in ["first", "last"] {
            let mut entry = Vec::new();
            put_len(&mut entry, 1, b"k");
            put_len(&mut entry, 2, &encode_value(&Value::String(v.into())));
            put_len(&mut doc, 1, &entry);
        }
        assert_eq!(to_json(&doc)?, r#"{"k":"last"}"#);
        Ok(())
    }
}
