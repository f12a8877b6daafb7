//! Test support: a protobuf encoder for `google.protobuf.Struct`, `Value` and `ListValue`, to
//! feed [`crate::struct_config`] the bytes Envoy hands over for a Struct configuration. The
//! host tests include this same file (`#[path]`), so both layers encode alike.

use serde_json::{Map, Value};

/// A Struct's serialized bytes, entries in the map's order (Envoy's order is arbitrary).
pub fn encode_struct(map: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in map {
        let mut entry = Vec::new();
        put_len(&mut entry, 1, key.as_bytes());
        put_len(&mut entry, 2, &encode_value(value));
        put_len(&mut out, 1, &entry);
    }
    out
}

/// A `google.protobuf.Value`'s serialized bytes.
pub fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        Value::Null => out.extend([0x08, 0]),
        Value::Bool(b) => out.extend([0x20, u8::from(*b)]),
        Value::Number(n) => {
            out.push(0x11);
            out.extend(n.as_f64().unwrap_or(f64::NAN).to_le_bytes());
        }
        Value::String(s) => put_len(&mut out, 3, s.as_bytes()),
        Value::Array(items) => {
            let mut list = Vec::new();
            for item in items {
                put_len(&mut list, 1, &encode_value(item));
            }
            put_len(&mut out, 6, &list);
        }
        Value::Object(map) => put_len(&mut out, 5, &encode_struct(map)),
    }
    out
}

/// Appends a length-delimited field (`field` < 16).
pub fn put_len(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    let mut len = bytes.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
}
