//! Reading and testing short byte strings (header maps, names and values) a word at a time.
//! Every request header goes through these: the byte-by-byte loops of the standard library (and its word-wise
//! ones, which use wasm32's four-byte `usize`) cost the filter tens of instructions per header.

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether `test` holds for any of the words that cover `bytes`: whole eight-byte words, then
/// the last eight bytes (overlapping the words before); a string shorter than eight bytes is
/// one word, made of two overlapping four-byte halves or, under four bytes, zero-padded. So a
/// byte may be seen twice, and zero bytes added: `test` must be a per-byte property that a
/// zero byte does not have.
#[inline]
fn any_word(bytes: &[u8], test: impl Fn(u64) -> bool) -> bool {
    let n = bytes.len();
    if n < 4 {
        let word = bytes
            .iter()
            .rev()
            .fold(0u64, |word, &b| word << 8 | u64::from(b));
        return test(word);
    }
    if n < 8 {
        let half = |at: usize| u64::from(u32_at(bytes, at).unwrap_or(0));
        return test(half(0) | half(n - 4) << 32);
    }
    let mut at = 0;
    while at + 8 < n {
        if test(u64_at(bytes, at)) {
            return true;
        }
        at += 8;
    }
    test(u64_at(bytes, n - 8))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// The little-endian `u32` at `at`, if four bytes are there.
pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// Whether `bytes` may have an ASCII upper-case letter: never false when it has one, and true
/// otherwise only for some bytes outside ASCII (which then cost a needless lower-casing copy).
#[inline]
pub fn may_have_ascii_uppercase(bytes: &[u8]) -> bool {
    any_word(bytes, |word| {
        // Each byte's low seven bits, b: b + 0x3f sets the byte's high bit when b >= 'A', and
        // b + 0x25 when b > 'Z'; neither sum carries into the next byte.
        let low = word & LOW7;
        (low + 0x3f3f_3f3f_3f3f_3f3f) & !(low + 0x2525_2525_2525_2525) & HIGH != 0
    })
}

/// `bytes.is_ascii()`.
#[inline]
pub fn is_ascii(bytes: &[u8]) -> bool {
    !any_word(bytes, |word| word & HIGH != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_tests_agree_with_the_byte_tests() {
        // Every byte value at every place of strings of 0 to 17 bytes (both sides of the
        // eight-byte words and the four-byte halves), beside lower-case and non-ASCII bytes.
        assert!(!may_have_ascii_uppercase(b""));
        assert!(is_ascii(b""));
        assert!(!may_have_ascii_uppercase(b"x-conversation-id"));
        for len in 1..=17usize {
            for at in 0..len {
                for byte in 0..=255u8 {
                    for filler in [b'x', 0xff] {
                        let mut bytes = vec![filler; len];
                        bytes[at] = byte;
                        let upper = bytes.iter().any(u8::is_ascii_uppercase);
                        let said = may_have_ascii_uppercase(&bytes);
                        assert!(said || !upper, "{bytes:?}");
                        if bytes.is_ascii() {
                            assert_eq!(said, upper, "{bytes:?}");
                        }
                        assert_eq!(is_ascii(&bytes), bytes.is_ascii(), "{bytes:?}");
                    }
                }
            }
        }
    }
}
