//! Example strings that a regular expression matches, for `simulate`: without them a rule
//! whose clause is `matches` would never be reached by synthetic requests, and its row would
//! be missing from the table a config author reads before raising a split.
//!
//! The pattern is parsed with `regex-syntax` (Unicode classes off, as in `regex-lite`, which
//! the engine matches with) and its tree walked once per variant: variant `k` takes branch
//! `k mod n` of every alternation and one more repetition than the least where the least is
//! zero, so `^(gpt-4|claude)-.*` gives `gpt-4-` and `claude-a`. Classes give printable ASCII
//! where they can. Every example is checked with the engine's own matcher and dropped if it
//! does not match (a word boundary, say, that the walk cannot satisfy), so none is wrong.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Variants tried per pattern.
const VARIANTS: usize = 3;
/// No example grows past this: a header value, not a stress test.
const MAX_EXAMPLE_LEN: usize = 256;

/// Up to three distinct strings that `pattern` matches (unanchored, as the engine matches);
/// none when the pattern does not parse or nothing short enough was found.
pub fn examples(pattern: &str) -> Vec<String> {
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .nest_limit(64)
        .build()
        .parse(pattern)
    else {
        return Vec::new();
    };
    let Ok(matcher) = regex_lite::Regex::new(pattern) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for variant in 0..VARIANTS {
        let mut bytes = Vec::new();
        if !write(&hir, variant, &mut bytes) {
            continue;
        }
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        if matcher.is_match(&text) && !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

/// Appends variant `variant` of what `hir` matches; false when it would exceed
/// [`MAX_EXAMPLE_LEN`] or the class is empty.
fn write(hir: &Hir, variant: usize, out: &mut Vec<u8>) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(literal) => push(out, &literal.0),
        HirKind::Class(class) => match printable(class, variant) {
            Some(byte) => push(out, &[byte]),
            None => false,
        },
        HirKind::Repetition(repetition) => {
            let least = repetition.min as usize;
            let times = if least == 0 && variant > 0 { 1 } else { least };
            (0..times).all(|_| write(&repetition.sub, variant, out))
        }
        HirKind::Capture(capture) => write(&capture.sub, variant, out),
        HirKind::Concat(parts) => parts.iter().all(|part| write(part, variant, out)),
        HirKind::Alternation(branches) => match branches.get(variant % branches.len().max(1)) {
            Some(branch) => write(branch, variant, out),
            None => false,
        },
    }
}

fn push(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    if out.len() + bytes.len() > MAX_EXAMPLE_LEN {
        return false;
    }
    out.extend_from_slice(bytes);
    true
}

/// Member `variant` (counting round) of the class's first few, preferring what a header value
/// would hold: lower-case letters, upper-case ones, digits, other printable ASCII, then
/// anything ASCII. Varying it matters: the parser turns `(4|5)` into the class `[45]`.
fn printable(class: &Class, variant: usize) -> Option<u8> {
    let ranges: Vec<(u32, u32)> = match class {
        Class::Unicode(c) => c
            .ranges()
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect(),
        Class::Bytes(c) => c
            .ranges()
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect(),
    };
    let tiers = [
        (b'a', b'z'),
        (b'A', b'Z'),
        (b'0', b'9'),
        (b'!', b'~'),
        (0, 0x7f),
    ];
    let mut members: Vec<u8> = Vec::with_capacity(VARIANTS);
    'tiers: for (low, high) in tiers {
        for &(start, end) in &ranges {
            let (first, last) = (start.max(u32::from(low)), end.min(u32::from(high)));
            for byte in (first..=last).filter_map(|b| u8::try_from(b).ok()) {
                if !members.contains(&byte) {
                    members.push(byte);
                }
                if members.len() == VARIANTS {
                    break 'tiers;
                }
            }
        }
    }
    members.get(variant % members.len().max(1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_matches_and_alternatives_each_show() {
        let cases: [(&str, &[&str]); 7] = [
            ("^(gpt-4|claude)-.*$", &["gpt-4-", "claude-b", "gpt-4-c"]),
            ("^Mozilla/5\\.0 \\(Windows", &["Mozilla/5.0 (Windows"]),
            ("(?i)^beta-[0-9]{3}$", &["beta-000", "BETA-111", "beta-222"]),
            ("\\d+\\.\\d+", &["0.0", "1.1", "2.2"]),
            ("^(a|b|c)x?$", &["a", "bx", "cx"]),
            ("^$", &[""]),
            ("[^a-z]", &["A", "B", "C"]),
        ];
        for (pattern, want) in cases {
            let got = examples(pattern);
            assert_eq!(got, want, "{pattern}");
            let re = regex_lite::Regex::new(pattern).unwrap();
            assert!(got.iter().all(|g| re.is_match(g)), "{pattern}");
        }
    }

    #[test]
    fn what_cannot_be_written_gives_nothing() {
        // Contradictory anchors, an empty class, a bad pattern, an over-long repetition.
        for pattern in ["a^b", "[^\\x00-\\x{10FFFF}]", "(", "a{300}"] {
            assert!(examples(pattern).is_empty(), "{pattern}");
        }
        // A word boundary the walk does not satisfy is dropped, not reported as a match.
        assert!(examples("a\\bb").is_empty());
    }
}
