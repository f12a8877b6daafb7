//! Sticky percentage buckets, exactly as the contract fixes them:
//! `point = (xxh3_64(salt + ":" + unit_id) as u128 * total) >> 64`.

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// The split point of a unit: `0 <= point < total`. `total` must be positive.
pub fn bucket_point(salt: &str, unit_id: &str, total: u64) -> u64 {
    let hash = key_hash(salt.as_bytes(), unit_id.as_bytes());
    ((u128::from(hash) * u128::from(total)) >> 64) as u64
}

/// `xxh3_64(salt ":" unit)` without building the key on the heap for ordinary lengths.
fn key_hash(salt: &[u8], unit: &[u8]) -> u64 {
    const STACK: usize = 256;
    let len = salt.len() + 1 + unit.len();
    if len <= STACK {
        let mut buf = [0u8; STACK];
        buf[..salt.len()].copy_from_slice(salt);
        buf[salt.len()] = b':';
        buf[salt.len() + 1..len].copy_from_slice(unit);
        xxh3_64(&buf[..len])
    } else {
        let mut hasher = Xxh3::new();
        hasher.update(salt);
        hasher.update(b":");
        hasher.update(unit);
        hasher.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_hash_like_the_one_shot_function() {
        let unit = "u".repeat(1000);
        let key = format!("salt:{unit}");
        assert_eq!(key_hash(b"salt", unit.as_bytes()), xxh3_64(key.as_bytes()));
        assert_eq!(key_hash(b"s", b"x"), xxh3_64(b"s:x"));
    }

    #[test]
    fn point_is_below_total() {
        for total in [1u64, 2, 100, 10_000, u64::from(u32::MAX)] {
            for id in ["", "a", "conversation-42", "ünïcode"] {
                assert!(bucket_point("flag", id, total) < total);
            }
        }
        assert_eq!(bucket_point("f", "x", 1), 0);
    }
}
