//! A fetched consent document put into the policy: the policy's text with the value of
//! `consent.tenants` replaced by the consent document's `tenants`, spliced as text.
//!
//! Every worker merges each new pair of documents before it checks it, while its requests
//! wait. Reading both documents into trees and writing the policy back took about as long as
//! checking the result (1.28 MB with 10,000 consent records: 21 ms natively, about half of a
//! worker's stall per consent change in Envoy). Here both documents are checked to be JSON
//! (`serde_json`, building nothing), only the members on the way to `tenants` are located, and
//! the rest of both is copied as it was written. The engine then checks the merged text whole,
//! as any policy: a key repeated anywhere in it, the consent records included, refuses it with
//! its place, so a second record for a tenant cannot silently replace an opt-out.
//!
//! The members are located by [`Members::of`], a few lines over bytes rather than
//! `serde_json`'s `RawValue`, which did the same with 11 KB more module; the tests hold it to
//! `RawValue`'s answers.

use std::borrow::Cow;
use std::ops::Range;

/// An object's members in document order: each key decoded, and where its value's text is.
struct Members<'a>(Vec<(Cow<'a, str>, Range<usize>)>);

impl<'a> Members<'a> {
    /// The members of the object that starts at `start` of `text` (after whitespace), a JSON
    /// text already checked; `None` when the value there is not an object.
    fn of(text: &'a str, start: usize) -> Option<Members<'a>> {
        let mut at = Cursor {
            text: text.as_bytes(),
            at: start,
        };
        at.skip_whitespace();
        if at.next() != Some(b'{') {
            return None;
        }
        let mut members = Vec::new();
        loop {
            at.skip_whitespace();
            let key = match at.peek()? {
                b'}' => return Some(Members(members)),
                b',' => {
                    at.at += 1;
                    continue;
                }
                _ => at.value()?,
            };
            at.skip_whitespace();
            if at.next() != Some(b':') {
                return None;
            }
            let value = at.value()?;
            let raw = text.get(key)?;
            let key = match raw.contains('\\') {
                // The engine's own reader: `serde_json`'s for a `String` would add 4.8 KB.
                true => Cow::Owned(switchyard_policy::json_string(raw)?),
                false => Cow::Borrowed(raw.get(1..raw.len().saturating_sub(1))?),
            };
            members.push((key, value));
        }
    }

    /// Where the value of the last member named `key` is (as `serde_json` would keep it; a
    /// repeated key is refused anyway when the engine checks the merged text).
    fn get(&self, key: &str) -> Option<Range<usize>> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

/// A position in a JSON text that `serde_json` has accepted, so only the structure is
/// followed: strings (and their escaped quotes) and nesting.
struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Moves to the next of `stops` (staying put on one), `None` at the end of the text.
    fn find(&mut self, stops: impl Fn(u8) -> bool) -> Option<u8> {
        let skip = self.text.get(self.at..)?.iter().position(|&b| stops(b))?;
        self.at += skip;
        self.peek()
    }

    /// Past the string that starts here.
    fn skip_string(&mut self) -> Option<()> {
        self.at += 1;
        loop {
            match self.find(|b| b == b'"' || b == b'\\')? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                _ => self.at += 2,
            }
        }
    }

    /// Past the value that starts here (after whitespace), returning where it is. Nesting is
    /// counted, not followed, so a deep document takes no stack.
    fn value(&mut self) -> Option<Range<usize>> {
        self.skip_whitespace();
        let start = self.at;
        match self.peek()? {
            b'"' => self.skip_string()?,
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.find(|b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']'))? {
                        b'"' => self.skip_string()?,
                        b'{' | b'[' => {
                            depth += 1;
                            self.at += 1;
                        }
                        _ => {
                            depth -= 1;
                            self.at += 1;
                            if depth == 0 {
                                break;
                            }
                        }
                    }
                }
            }
            _ => {
                let end = |b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r');
                if self.find(end).is_none() {
                    self.at = self.text.len();
                }
            }
        }
        Some(start..self.at)
    }
}

/// Checks that `text` is JSON, building nothing.
fn check_json(text: &str, what: &str) -> Result<(), String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| format!("{what} is not valid JSON: {e}"))
}

/// The policy with `consent.tenants` replaced by the consent document's `tenants`.
/// `policy_loaded`: the policy text is one the engine has already accepted (the bootstrap), so
/// it is not checked to be JSON again on every consent change.
pub fn merge_consent(policy: &str, consent: &str, policy_loaded: bool) -> Result<String, String> {
    let policy = policy.strip_prefix('\u{feff}').unwrap_or(policy);
    let consent = consent.strip_prefix('\u{feff}').unwrap_or(consent);
    check_json(consent, "the consent document")?;
    if !policy_loaded {
        check_json(policy, "the policy")?;
    }
    let records = Members::of(consent, 0)
        .ok_or("the consent document must be an object {\"tenants\": {...}}")?;
    if let Some((unknown, _)) = records.0.iter().find(|(k, _)| k != "tenants") {
        return Err(format!(
            "the consent document has an unknown field {} (expected: tenants)",
            switchyard_policy::quoted(unknown)
        ));
    }
    let tenants = records
        .get("tenants")
        .and_then(|span| consent.get(span))
        .ok_or("the consent document has no \"tenants\"")?;
    let no_section = "the policy has no consent section to take the fetched consent records";
    let section = Members::of(policy, 0)
        .ok_or("the policy must be an object")?
        .get("consent")
        .ok_or(no_section)?;
    let section_members = Members::of(policy, section.start).ok_or(no_section)?;
    // Without records of its own, the section takes them as its first member.
    let (cut, first_member) = match section_members.get("tenants") {
        Some(old) => (old, false),
        None => (section.start + 1..section.start + 1, true),
    };
    let mut merged = String::with_capacity(policy.len() + tenants.len() + 16);
    merged.push_str(policy.get(..cut.start).ok_or(no_section)?);
    if first_member {
        merged.push_str("\"tenants\":");
    }
    merged.push_str(tenants);
    if first_member && !section_members.0.is_empty() {
        merged.push(',');
    }
    merged.push_str(policy.get(cut.end..).ok_or(no_section)?);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants_of(merged: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(merged).unwrap_or_default();
        v["consent"]["tenants"].clone()
    }

    #[test]
    fn consent_replaces_tenants() {
        let policy = r#"{"version": "1", "consent": {"tenant_attribute": "t", "classes": {}, "tenants": {"a": {}}}, "flags": []}"#;
        let merged = merge_consent(policy, r#"{"tenants": {"b": {}}}"#, false).unwrap_or_default();
        assert_eq!(
            merged,
            r#"{"version": "1", "consent": {"tenant_attribute": "t", "classes": {}, "tenants": {"b": {}}}, "flags": []}"#
        );
        assert!(merge_consent(policy, r#"{"tenants": {}, "x": 1}"#, false)
            .is_err_and(|e| e.contains("unknown field \"x\"")));
        assert!(merge_consent(policy, "[]", false).is_err_and(|e| e.contains("must be an object")));
        assert!(merge_consent(policy, "{", false).is_err_and(|e| e.contains("not valid JSON")));
        assert!(merge_consent(policy, "{}", false).is_err_and(|e| e.contains("no \"tenants\"")));
        assert!(merge_consent(
            r#"{"version": "1", "flags": []}"#,
            r#"{"tenants": {}}"#,
            false
        )
        .is_err_and(|e| e.contains("no consent section")));
        assert!(
            merge_consent(r#"{"consent": []}"#, r#"{"tenants": {}}"#, false)
                .is_err_and(|e| e.contains("no consent section"))
        );
    }

    #[test]
    fn only_a_policy_not_loaded_before_is_checked_to_be_json() {
        let broken = r#"{"consent": {"tenants": {}}, "x": }"#;
        let consent = r#"{"tenants": {"b": {}}}"#;
        assert!(merge_consent(broken, consent, false)
            .is_err_and(|e| e.starts_with("the policy is not valid JSON")));
        // A loaded policy is JSON: not read again (this one would be refused by the engine).
        assert_eq!(
            merge_consent(broken, consent, true).as_deref(),
            Ok(r#"{"consent": {"tenants": {"b": {}}}, "x": }"#)
        );
    }

    #[test]
    fn the_rest_of_both_documents_is_kept_as_written() {
        // Escapes, nesting, a byte-order mark and odd spacing: copied, not re-encoded.
        let policy = "\u{feff}{ \"a\\u0062\": [1, {\"tenants\": 2}],\n  \"consent\" : {\n    \"tenants\" :\t{\"x\": {\"c\": {\"state\": \"opt_in\"}}} , \"classes\": {}\n  }\n}";
        let consent =
            "{\"tenants\": {\"caf\\u00e9\": {}, \"y\": {\"c\": {\"state\": \"opt_out\"}}}}";
        let merged = merge_consent(policy, consent, false).unwrap_or_default();
        assert_eq!(
            merged,
            "{ \"a\\u0062\": [1, {\"tenants\": 2}],\n  \"consent\" : {\n    \"tenants\" :\t{\"caf\\u00e9\": {}, \"y\": {\"c\": {\"state\": \"opt_out\"}}} , \"classes\": {}\n  }\n}"
        );
        assert_eq!(
            tenants_of(&merged),
            serde_json::json!({"café": {}, "y": {"c": {"state": "opt_out"}}})
        );
    }

    #[test]
    fn a_section_without_records_takes_them_first() {
        let consent = r#"{"tenants": {"b": {}}}"#;
        for (policy, want) in [
            (
                r#"{"consent": {"classes": {}}}"#,
                r#"{"consent": {"tenants":{"b": {}},"classes": {}}}"#,
            ),
            (
                r#"{"consent": { }}"#,
                r#"{"consent": {"tenants":{"b": {}} }}"#,
            ),
        ] {
            let merged = merge_consent(policy, consent, false).unwrap_or_default();
            assert_eq!(merged, want);
            assert_eq!(tenants_of(&merged), serde_json::json!({"b": {}}));
        }
    }

    /// An object's members as `serde_json` finds them: each key and its value's text.
    struct RawMembers(Vec<(String, String)>);

    impl<'de> serde::Deserialize<'de> for RawMembers {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = RawMembers;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<M: serde::de::MapAccess<'de>>(
                    self,
                    mut map: M,
                ) -> Result<RawMembers, M::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) =
                        map.next_entry::<String, &serde_json::value::RawValue>()?
                    {
                        out.push((k, v.get().to_string()));
                    }
                    Ok(RawMembers(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    fn located(text: &str) -> Option<Vec<(String, String)>> {
        let members = Members::of(text, 0)?;
        Some(
            members
                .0
                .into_iter()
                .map(|(k, span)| (k.into_owned(), text.get(span).unwrap_or("?").to_string()))
                .collect(),
        )
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        // Strings full of what a scanner could trip on: quotes, backslashes, brackets, commas,
        // colons, line breaks, non-ASCII.
        let text = || "[\"\\\\{}\\[\\],: a\u{e9}\n\u{1F600}]{0,8}";
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 5, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::vec((text(), inner), 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The members found by scanning are `serde_json`'s: the same keys, decoded, and the
        /// same value texts, compact or pretty, at the top and inside.
        #[test]
        fn members_are_where_serde_json_finds_them(
            value in json_value(),
            pretty in proptest::bool::ANY,
        ) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap_or_default()
            } else {
                serde_json::to_string(&value).unwrap_or_default()
            };
            let want = serde_json::from_str::<RawMembers>(&text).ok().map(|m| m.0);
            proptest::prop_assert_eq!(located(&text), want.clone(), "{}", text);
            // Inside: each member's value, located again from its own span.
            for (_, inner) in want.unwrap_or_default() {
                let at = text.find(&inner).unwrap_or(0);
                let nested = Members::of(&text, at).map(|m| m.0.len());
                let want = serde_json::from_str::<RawMembers>(&inner).ok().map(|m| m.0.len());
                proptest::prop_assert_eq!(nested, want, "{}", inner);
            }
        }
    }

    #[test]
    fn repeated_keys_stay_in_the_text_for_the_engine_to_refuse() {
        // A second, empty record for a tenant would undo an opt-out if one copy vanished here.
        let policy = r#"{"version": "1", "consent": {"tenant_attribute": "t", "classes": {"c": {"mode": "opt_in"}}}, "flags": []}"#;
        let repeated = r#"{"tenants": {"b": {"c": {"state": "opt_out", "actor": "x", "at": "2026-01-01T00:00:00Z"}}, "b": {}}}"#;
        let merged = merge_consent(policy, repeated, false).unwrap_or_default();
        let refused = switchyard_policy::load(&merged).err().unwrap_or_default();
        assert!(
            refused
                .iter()
                .any(|e| e.place == "consent.tenants.b" && e.message.contains("more than once")),
            "{refused:?}"
        );
    }
}
