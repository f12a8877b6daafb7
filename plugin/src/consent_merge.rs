//! A fetched consent document put into the policy: the policy's text with the value of
//! `consent.tenants` replaced by the consent document's `tenants`, spliced as text.
//!
//! Every worker merges each new pair of documents before it checks it, while its requests
//! wait. Reading both documents into trees and writing the policy back took about as long as
//! checking the result (1.28 MB with 10,000 consent records: 21 ms natively, about half of a
//! worker's stall per consent change in Envoy). So nothing is built and little is walked:
//! - where the policy takes the records ([`Splice`]) is found once per policy text by a scanner
//!   that locates only the members on the way to `consent.tenants` ([`Members::of`], a few
//!   lines over bytes rather than `serde_json`'s `RawValue`, which did the same with 11 KB more
//!   module; the tests hold it to `RawValue`'s answers);
//! - the consent document is checked to be JSON and exactly `{"tenants": ...}` in one
//!   `serde_json` pass that builds nothing: the text from the key's colon to the closing brace
//!   must be one JSON value, the records, so they are not walked again to find where they end;
//! - the rest of both is copied as it was written.
//!
//! The engine then checks the merged text whole, as any policy: a key repeated anywhere in it,
//! the consent records included, refuses it with its place, so a second record for a tenant
//! cannot silently replace an opt-out.

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

/// Where `text[..end]` ends without its trailing JSON whitespace (and nothing else:
/// `str::trim` would take more).
fn before_whitespace(text: &[u8], mut end: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(end.wrapping_sub(1)) {
        end -= 1;
    }
    end
}

/// Where a policy's text takes the fetched consent records. The policy stays the same across
/// consent changes, so a host finds this once per policy text, not on every change: finding
/// it walks the policy's own consent table, as long as the fetched one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Splice {
    /// The value of the section's `tenants`, replaced; or, when the section has none, the
    /// empty place just inside its `{`, where the records go in as its first member.
    cut: Range<usize>,
    first_member: bool,
    /// The section has other members, which a first member is separated from by a comma.
    more_members: bool,
}

impl Splice {
    /// Where `policy` takes consent records. `policy_loaded`: the engine has accepted this
    /// text already (the bootstrap), so it is not checked to be JSON again.
    pub fn find(policy: &str, policy_loaded: bool) -> Result<Splice, String> {
        let body = policy.strip_prefix('\u{feff}').unwrap_or(policy);
        if !policy_loaded {
            check_json(body, "the policy")?;
        }
        let no_section = "the policy has no consent section to take the fetched consent records";
        let start = policy.len() - body.len();
        let section = Members::of(policy, start)
            .ok_or("the policy must be an object")?
            .get("consent")
            .ok_or(no_section)?;
        let members = Members::of(policy, section.start).ok_or(no_section)?;
        let more_members = !members.0.is_empty();
        Ok(match members.get("tenants") {
            Some(cut) => Splice {
                cut,
                first_member: false,
                more_members,
            },
            None => Splice {
                cut: section.start + 1..section.start + 1,
                first_member: true,
                more_members,
            },
        })
    }

    /// `policy` (the text this splice was found in) with the consent document's records in
    /// place of its own.
    pub fn merge(&self, policy: &str, consent: &str) -> Result<String, String> {
        let tenants = consent_tenants(consent)?;
        let broken = "the policy changed since its consent section was located";
        let (before, after) = (
            policy.get(..self.cut.start).ok_or(broken)?,
            policy.get(self.cut.end..).ok_or(broken)?,
        );
        let before = before.strip_prefix('\u{feff}').unwrap_or(before);
        let mut merged = String::with_capacity(before.len() + tenants.len() + after.len() + 12);
        merged.push_str(before);
        if self.first_member {
            merged.push_str("\"tenants\":");
        }
        merged.push_str(tenants);
        if self.first_member && self.more_members {
            merged.push(',');
        }
        merged.push_str(after);
        Ok(merged)
    }
}

/// The text of the consent document's `tenants` value, once the document is checked to be
/// JSON and exactly `{"tenants": ...}`.
///
/// Fast path, for a document written as expected: it opens with `{"tenants":`, and the text
/// from there to its closing brace is one JSON value (`serde_json` refuses anything after a
/// value, such as a second member). That proves the document whole in one pass that builds
/// nothing, without walking the records a second time to find where they end. Anything else is
/// read again by the slow path, which says what is wrong.
fn consent_tenants(consent: &str) -> Result<&str, String> {
    let consent = consent.strip_prefix('\u{feff}').unwrap_or(consent);
    match written_as_expected(consent) {
        Some(records) => Ok(records),
        None => consent_tenants_slowly(consent),
    }
}

/// [`consent_tenants`]'s fast path: the records of a document that opens with `{"tenants":`
/// and is one JSON value from there to its closing brace; `None` for anything else.
fn written_as_expected(consent: &str) -> Option<&str> {
    let text = consent.as_bytes();
    let mut at = Cursor { text, at: 0 };
    at.skip_whitespace();
    (at.next()? == b'{').then_some(())?;
    at.skip_whitespace();
    let key = b"\"tenants\"";
    (text.get(at.at..at.at + key.len())? == key).then_some(())?;
    at.at += key.len();
    at.skip_whitespace();
    (at.next()? == b':').then_some(())?;
    at.skip_whitespace();
    let close = before_whitespace(text, text.len()).checked_sub(1)?;
    (*text.get(close)? == b'}').then_some(())?;
    let value = consent.get(at.at..before_whitespace(text, close))?;
    check_json(value, "").ok()?;
    Some(value)
}

/// [`consent_tenants`] for a document its fast path did not prove: why it is refused, or its
/// records where they are (escaped keys, say).
fn consent_tenants_slowly(consent: &str) -> Result<&str, String> {
    check_json(consent, "the consent document")?;
    let members = Members::of(consent, 0)
        .ok_or("the consent document must be an object {\"tenants\": {...}}")?;
    if let Some((unknown, _)) = members.0.iter().find(|(k, _)| k != "tenants") {
        return Err(format!(
            "the consent document has an unknown field {} (expected: tenants)",
            switchyard_policy::quoted(unknown)
        ));
    }
    match members.0.as_slice() {
        [] => Err("the consent document has no \"tenants\"".to_string()),
        [(_, span)] => consent
            .get(span.clone())
            .ok_or_else(|| "the consent document could not be read".to_string()),
        _ => Err("the consent document has \"tenants\" more than once; keep one".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy with `consent.tenants` replaced by the consent document's `tenants`, its splice
    /// found anew (a host keeps the [`Splice`] instead).
    fn merge_consent(policy: &str, consent: &str, policy_loaded: bool) -> Result<String, String> {
        Splice::find(policy, policy_loaded)?.merge(policy, consent)
    }

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
        assert!(
            merge_consent(policy, r#"{"tenants": {}, "tenants": {"b": {}}}"#, false)
                .is_err_and(|e| e.contains("\"tenants\" more than once"))
        );
        assert!(merge_consent(policy, r#"{"tenants": {}} x"#, false)
            .is_err_and(|e| e.contains("not valid JSON")));
        assert!(merge_consent(policy, r#"{"tenants": {"b": }}"#, false)
            .is_err_and(|e| e.contains("not valid JSON")));
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

    #[test]
    fn the_consent_records_are_found_by_their_key_and_the_closing_brace() {
        // What the fast path leaves to the slow one, which reads them or says what is wrong.
        for odd in [
            r#"{"ten\u0061nts": {}}"#,
            r#"{"tenants": {}, "x": 1}"#,
            r#"{"tenants": {}} x"#,
            r#"{"x": 1, "tenants": {}}"#,
            r#"{"tenants": {}, "tenants": {}}"#,
            r#"["tenants", {}]"#,
        ] {
            assert_eq!(written_as_expected(odd), None, "{odd}");
        }
        for (consent, want) in [
            ("{\"tenants\":{}}", "{}"),
            (
                "\u{feff} \n{ \"ten\\u0061nts\" :\t[1, \"}\"] \r\n}\n ",
                "[1, \"}\"]",
            ),
            ("{\"tenants\": \"a \\\" b\"}", "\"a \\\" b\""),
        ] {
            assert_eq!(consent_tenants(consent).as_deref(), Ok(want), "{consent}");
        }
    }

    #[test]
    fn a_splice_found_once_serves_every_consent_document() {
        let policy = "\u{feff}{\"consent\": {\"tenants\": {\"a\": {}}, \"classes\": {}}}";
        let found = Splice::find(policy, false);
        assert!(found.is_ok(), "{found:?}");
        let splice = found.unwrap_or_default();
        for records in [r#"{"b": {}}"#, "{}", r#"{"c": {"x": {}}}"#] {
            let consent = format!("{{\"tenants\": {records}}}");
            assert_eq!(
                splice.merge(policy, &consent).as_deref(),
                Ok(
                    format!("{{\"consent\": {{\"tenants\": {records}, \"classes\": {{}}}}}}")
                        .as_str()
                )
            );
        }
        assert!(splice.merge("{}", "{\"tenants\": {}}").is_err());
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

        /// The consent document's records are `serde_json`'s value of `tenants`, whatever
        /// the value and the spacing around it.
        #[test]
        fn consent_records_are_where_serde_json_finds_them(
            value in json_value(),
            pretty in proptest::bool::ANY,
        ) {
            let document = serde_json::json!({"tenants": value});
            let text = if pretty {
                serde_json::to_string_pretty(&document).unwrap_or_default()
            } else {
                serde_json::to_string(&document).unwrap_or_default()
            };
            let want = serde_json::from_str::<RawMembers>(&text)
                .ok()
                .and_then(|m| m.0.into_iter().next())
                .map(|(_, raw)| raw);
            proptest::prop_assert_eq!(consent_tenants(&text).ok().map(str::to_string), want.clone(), "{}", text);
            // And found by the fast path, which a document written as expected takes.
            proptest::prop_assert_eq!(written_as_expected(&text).map(str::to_string), want, "{}", text);
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
