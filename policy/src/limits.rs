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
/// Compiled size of one regular expression (regex-lite's estimate, in bytes). A 1,000-byte
/// alternation of 110 words takes about 28 KiB; `[\w.-]{1,64}` about 7 KiB.
pub const MAX_REGEX_SIZE: usize = 64 * 1024;
/// Regular expressions in one policy, counted per clause value (identical clauses are
/// compiled once and count once). With [`MAX_REGEX_SIZE`] this bounds what a policy's regexes
/// can take, about 32 MiB, with their matching caches.
pub const MAX_REGEXES: usize = 500;
/// Length of a key or name (flag key, variation, segment, attribute, rule name, header name).
pub const MAX_NAME_LEN: usize = 200;
