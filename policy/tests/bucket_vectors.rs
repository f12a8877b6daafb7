//! testdata/bucket_vectors.json was computed with Python's `xxhash` package, an implementation
//! independent of the Rust crate, so this checks the contract's formula, not itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use switchyard_policy::bucket_point;

#[test]
fn bucketing_matches_independent_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/bucket_vectors.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 50);
    let mut saw_empty = false;
    let mut saw_non_ascii = false;
    let mut saw_long = false;
    for v in vectors {
        let salt = v["salt"].as_str().unwrap();
        let unit = v["unit"].as_str().unwrap();
        let total = v["total"].as_u64().unwrap();
        let expected = v["point"].as_u64().unwrap();
        let hash: u64 = v["hash"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            xxhash_rust::xxh3::xxh3_64(format!("{salt}:{unit}").as_bytes()),
            hash,
            "hash of {salt:?}:{unit:?}"
        );
        assert_eq!(
            bucket_point(salt, unit, total),
            expected,
            "{salt:?} {unit:?} {total}"
        );
        saw_empty |= unit.is_empty();
        saw_non_ascii |= !unit.is_ascii();
        saw_long |= unit.len() > 1000;
    }
    assert!(saw_empty && saw_non_ascii && saw_long);
}
