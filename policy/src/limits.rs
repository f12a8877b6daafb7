//! Hard limits on a policy document, so a huge or hostile document is refused with an error
//! instead of exhausting the proxy's memory. Each is far above what a hand-written or generated
//! policy needs (the benchmark's large policy has 20 flags and 10,000 consent records).

/// Size of the policy text in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Flags in one policy.
pub const MAX_FLAGS: usize = 1_000;
/// Variations in one flag.
pub const MAX_VARIATIONS: usize = 100;
/// Rules in one flag.
pub const MAX_RULES: usize = 500;
/// Overrides in one flag.
pub const MAX_OVERRIDES: usize = 500;
/// Entries in one rule's `when`, and clauses in one segment.
pub const MAX_CONDITIONS: usize = 100;
/// Segments in one policy.
pub const MAX_SEGMENTS: usize = 1_000;
/// Values in one clause or override.
pub const MAX_VALUES: usize = 100_000;
/// Context attributes.
pub const MAX_ATTRIBUTES: usize = 200;
/// Tenants with consent records.
pub const MAX_CONSENT_TENANTS: usize = 1_000_000;
/// Consent classes.
pub const MAX_CONSENT_CLASSES: usize = 200;
/// Entries in one split.
pub const MAX_SPLIT_ENTRIES: usize = 100;
/// One split weight; with at most 100 entries the total fits easily in a u64.
pub const MAX_WEIGHT: u64 = 1_000_000_000;
/// Length of a regular expression's source text.
pub const MAX_REGEX_LEN: usize = 1_000;
/// Compiled size of one regular expression, as regex-lite estimates it in the filter
/// (wasm32): a 1,000-byte alternation of 110 words takes 18 KiB, a host name matcher
/// `^[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63}){0,10}$` 50 KiB. A 64-bit build (the `switchyard`
/// command) estimates the same pattern 1.3 to 1.65 times larger, hence its larger limit: the
/// command and the filter agree but for patterns within a few percent of the limit.
pub const MAX_REGEX_SIZE: usize = if usize::BITS == 32 {
    64 * 1024
} else {
    104 * 1024
};
/// The regular-expression budget of one policy, in units: each regex counts one per capture
/// slot pair regex-lite keeps (the whole match and each `(...)` group), since its matching
/// cache grows with them; identical clauses are compiled once and count once, a pattern
/// repeated within a clause counts once. With [`MAX_REGEX_SIZE`] this bounds what a policy's
/// regexes take in the filter, programs and matching caches together, to about 32 MiB.
pub const MAX_REGEXES: usize = 256;
/// Length of an exposure attribute's value: it travels in a header on every request its
/// variation serves, and many servers refuse a header line over 8 KiB.
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 1_000;
/// Length of a key or name (flag key, variation, segment, attribute, rule name, header name).
pub const MAX_NAME_LEN: usize = 200;
