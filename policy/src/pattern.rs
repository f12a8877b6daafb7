//! A `matches` value: its compiled regular expression, and the literal text any match must
//! start with, found once at policy load.
//!
//! regex-lite matches with a Pike VM and no literal search of its own: testing
//! `^eu-north-[0-9]+$` against `us-east-1` walks the VM over the value (about 2,000
//! instructions natively, the dearest clause of the large benchmark policy). A pattern
//! anchored at the start whose first items are plain characters can only match a value that
//! starts with them, so a value that does not is refused with one comparison.

use regex_lite::Regex;

#[derive(Debug, Clone)]
pub struct Pattern {
    /// Text every match starts with (empty when the pattern promises none).
    prefix: Box<str>,
    regex: Regex,
}

impl Pattern {
    /// `regex`, compiled from `source` with the default flags.
    pub fn new(source: &str, regex: Regex) -> Pattern {
        Pattern {
            prefix: required_prefix(source).into(),
            regex,
        }
    }

    pub fn is_match(&self, value: &str) -> bool {
        value.starts_with(&*self.prefix) && self.regex.is_match(value)
    }
}

/// The literal text at the start of every match of `source`, read conservatively: only a
/// pattern that starts with `^` (without the multi-line flag, which only a leading `(?m)` could
/// set, the start of the value) and has no `|` anywhere (so the whole pattern is one sequence),
/// then the run of characters that are literal wherever they stand, less its last character.
/// That one may be quantified, by a `?` after it or after an inline flag group (`a(?i)?`
/// repeats the `a`). Anything else gives `""`: the regex alone decides.
fn required_prefix(source: &str) -> &str {
    let Some(rest) = source.strip_prefix('^') else {
        return "";
    };
    if source.contains('|') {
        return "";
    }
    let run = rest
        .bytes()
        .take_while(|&b| b.is_ascii_alphanumeric() || b"-_/:=@,;!%&'\"<>~`".contains(&b))
        .count();
    // The run is ASCII, so any length of it is a character boundary.
    rest.get(..run.saturating_sub(1)).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_what_every_match_must_start_with() {
        let cases = [
            ("^eu-north-[0-9]+$", "eu-north"),
            ("^abc", "ab"),
            ("^abc$", "ab"),
            ("^ab?c", "a"),
            ("^ab*", "a"),
            ("^ab+", "a"),
            ("^ab{2}", "a"),
            ("^ab(?i)?", "a"),
            ("^a\\.b", ""),
            ("^ab.c", "a"),
            ("^(ab)", ""),
            ("^[ab]c", ""),
            ("^a|b", ""),
            ("^abc|d", ""),
            ("^(?:a|b)c", ""),
            ("^(?i)ab", ""),
            ("^abc(?i)d", "ab"),
            ("(?m)^ab", ""),
            ("ab", ""),
            ("^", ""),
            ("^ a", ""),
            ("^é", ""),
            ("^ab#c", "a"),
        ];
        for (source, prefix) in cases {
            assert_eq!(required_prefix(source), prefix, "{source}");
        }
    }

    /// With the prefix check in front, every pattern matches exactly what its regex matches.
    #[test]
    fn the_prefix_check_never_changes_an_answer() {
        let sources = [
            "^eu-north-[0-9]+$",
            "^abc",
            "^ab?c",
            "^ab*c",
            "^ab+",
            "^ab{0}c",
            "^ab{0,1}",
            "^a\\.b",
            "^a.b",
            "^a|b",
            "^abc|b",
            "^(?i)ab",
            "^ab(?i)c",
            "(?m)^ab",
            "^a#b",
            "^ab\\z",
            "^a-b",
            "^a(?x) b",
        ];
        let values = [
            "",
            "a",
            "ab",
            "abc",
            "ac",
            "abbc",
            "b",
            "xab",
            "ABC",
            "abC",
            "a.b",
            "aXb",
            "\nab",
            "x\nab",
            "a#b",
            "a-b",
            "eu-north-1",
            "eu-north-",
            "eu-west-1",
            "eu-north-12x",
        ];
        for source in sources {
            let regex = Regex::new(source).unwrap();
            let pattern = Pattern::new(source, regex.clone());
            for value in values {
                assert_eq!(
                    pattern.is_match(value),
                    regex.is_match(value),
                    "{source} on {value:?}"
                );
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Patterns put together from pieces of regex syntax, against short values.
        #[test]
        fn a_made_up_pattern_matches_as_its_regex(
            tokens in proptest::collection::vec(proptest::sample::select(vec![
                "^", "a", "b", "-", ".", "?", "*", "+", "{2}", "{0,1}", "(?i)", "(?m)", "|",
                "[ab]", "\\.", "(?:a|b)", "(", ")", "$", "#", " ", "(?x)", "\\z",
            ]), 0..8),
            anchored in proptest::bool::ANY,
            value in "[ab.A#\n -]{0,6}",
        ) {
            let source = format!("{}{}", if anchored { "^" } else { "" }, tokens.concat());
            if let Ok(regex) = Regex::new(&source) {
                let pattern = Pattern::new(&source, regex.clone());
                proptest::prop_assert_eq!(pattern.is_match(&value), regex.is_match(&value));
            }
        }
    }
}
