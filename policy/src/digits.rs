//! Numbers written into per-request text (exposure headers, filter state, events) without
//! `core::fmt`: its machinery is a large share of a request's instructions in the Wasm filter,
//! where `itoa` and a table lookup do the same job in a few dozen.

/// Appends `n` in decimal.
///
/// Numbers below 1,000 (a percentage split's bucket, a rule's index, a status) are pushed a
/// digit at a time: copying `itoa`'s buffer is a copy of unknown length, which V8 runs by
/// leaving the compiled module for a C function (about 50 instructions of Envoy's each), and
/// a large policy's request writes about twenty such numbers.
pub(crate) fn push_u64(out: &mut String, n: u64) {
    if n >= 1000 {
        out.push_str(itoa::Buffer::new().format(n));
        return;
    }
    let digit = |d: u64| char::from(b'0' + (d % 10) as u8);
    if n >= 100 {
        out.push(digit(n / 100));
    }
    if n >= 10 {
        out.push(digit(n / 10));
    }
    out.push(digit(n));
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
pub(crate) fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let text = buffer.format(n);
    for _ in text.len()..width {
        out.push('0');
    }
    out.push_str(text);
}

/// Appends `v` as 32 lower-case hex digits (`format!("{v:032x}")`).
/// The halves are shifted as `u64`: on wasm32 a `u128` shift is a call to `__lshrti3`, which
/// took a third of the work of rendering a pseudonym in the filter.
pub(crate) fn push_hex_u128(out: &mut String, v: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 32];
    for (half, digits) in [(v >> 64) as u64, v as u64]
        .into_iter()
        .zip(text.chunks_mut(16))
    {
        for (i, digit) in digits.iter_mut().enumerate() {
            *digit = HEX[((half >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    // Every byte is an ASCII hex digit.
    if let Ok(text) = std::str::from_utf8(&text) {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_core_fmt() {
        for n in (0u64..1200).chain([9_999, 10_000, 123_456_789, u64::MAX]) {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
            for width in [0, 2, 3, 4, 25] {
                let mut s = String::new();
                push_padded(&mut s, n, width);
                assert_eq!(s, format!("{n:0width$}"));
            }
        }
        for v in [
            0u128,
            1,
            0xdead_beef,
            u128::MAX,
            1 << 127,
            1 << 64,
            (1 << 64) - 1,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            let mut s = String::new();
            push_hex_u128(&mut s, v);
            assert_eq!(s, format!("{v:032x}"));
        }
    }
}
