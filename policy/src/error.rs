//! Policy errors: each names its place in the document, like
//! `flags[0].rules[2].split: variation "canddate" is not defined in flags[0].variations`.

use std::fmt;

use crate::json_out::json_str;
use crate::limits::MAX_NAME_LEN;

/// A value from the document as a message quotes it: a JSON string, so a control character
/// cannot break the log line, cut after [`MAX_NAME_LEN`] bytes with its length
/// (`"xxx… (1000000 bytes)"`), so a megabyte-long value costs a short line. Values that long
/// are refused anyway.
pub fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_NAME_LEN) + 24);
    if value.len() <= MAX_NAME_LEN {
        json_str(&mut out, value);
        return out;
    }
    json_str(
        &mut out,
        &format!("{}… ({} bytes)", prefix(value, MAX_NAME_LEN), value.len()),
    );
    out
}

/// The longest start of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// One problem in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Where in the document, as a path: `flags[0].rules[2].split`; empty for the whole document.
    pub place: String,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.place.is_empty() {
            write!(f, "policy: {}", self.message)
        } else {
            write!(f, "{}: {}", self.place, self.message)
        }
    }
}

/// The most problems a refused policy lists; the rest are counted. A hostile document can
/// have millions (a 16 MiB consent table of empty records), and listing them all would cost
/// the proxy gigabytes and flood its log; the first hundred say what is wrong.
pub const MAX_LISTED_ERRORS: usize = 100;

/// The longest message a listed problem keeps. Values are quoted cut ([`quoted`]), so this
/// only guards a message that would quote something unforeseen.
const MAX_MESSAGE_LEN: usize = 2_000;

/// The problems found in a rejected policy, in document order: the first
/// [`MAX_LISTED_ERRORS`] listed, the rest counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyErrors {
    listed: Vec<PolicyError>,
    unlisted: usize,
}

impl PolicyErrors {
    pub fn push(&mut self, place: impl Into<String>, message: impl Into<String>) {
        if self.listed.len() < MAX_LISTED_ERRORS {
            let mut message = message.into();
            if message.len() > MAX_MESSAGE_LEN {
                message.truncate(prefix(&message, MAX_MESSAGE_LEN).len());
                message.push_str("… (cut)");
            }
            self.listed.push(PolicyError {
                place: place.into(),
                message,
            });
        } else {
            self.unlisted += 1;
        }
    }

    /// Counts `n` more problems without listing them.
    pub fn add_unlisted(&mut self, n: usize) {
        self.unlisted += n;
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty() && self.unlisted == 0
    }

    /// How many problems there are, listed or not.
    pub fn len(&self) -> usize {
        self.listed.len() + self.unlisted
    }

    /// How many problems were found beyond the listed ones.
    pub fn unlisted(&self) -> usize {
        self.unlisted
    }

    /// The listed problems.
    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.listed.iter()
    }

    /// The listed problems as `place: message` lines, and a last line counting the others.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.listed.iter().map(ToString::to_string).collect();
        if self.unlisted > 0 {
            lines.push(self.unlisted_line());
        }
        lines
    }

    fn unlisted_line(&self) -> String {
        format!(
            "policy: {} more problem(s) not listed (only the first {MAX_LISTED_ERRORS} are)",
            self.unlisted
        )
    }

    /// Ok if there were no problems, else all of them.
    pub fn into_result<T>(self, value: T) -> Result<T, PolicyErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for PolicyErrors {
    /// One problem a line; a last line counts those not listed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.listed.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        if self.unlisted > 0 {
            write!(f, "\n{}", self.unlisted_line())?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_long_value_is_quoted_cut_at_a_character_boundary() {
        assert_eq!(quoted("in\n"), "\"in\\n\"");
        let long = "é".repeat(150); // 300 bytes; byte 200 is a boundary, 199 is not
        assert_eq!(
            quoted(&long),
            format!("\"{}… (300 bytes)\"", "é".repeat(100))
        );
        let odd = format!("a{}", "é".repeat(150));
        assert_eq!(
            quoted(&odd),
            format!("\"a{}… (301 bytes)\"", "é".repeat(99))
        );
    }

    #[test]
    fn a_message_past_the_limit_is_cut() {
        let mut errors = PolicyErrors::default();
        errors.push("x", "é".repeat(MAX_MESSAGE_LEN));
        let message = &errors.iter().next().unwrap().message;
        assert_eq!(message.len(), MAX_MESSAGE_LEN + "… (cut)".len());
        assert!(message.ends_with("é… (cut)"));
    }
}
