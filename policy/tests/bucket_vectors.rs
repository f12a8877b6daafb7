//! testdata/bucket_vectors.json was computed with Python's `xxhash` package, an implementation
//! independent of the Rust crate, so this checks the contract's formula, not itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use switchyard_policy::bucket_point;

/// testdata/bucket_vectors.json's vectors.
fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/bucket_vectors.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

#[test]
fn bucketing_matches_independent_vectors() {
    let vectors = vectors();
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

/// A flag's own `salt` is what is hashed (not its key): a policy whose flag carries a vector's
/// salt buckets each unit at the vector's point.
#[test]
fn a_flags_salt_is_what_is_hashed() {
    let mut checked = 0;
    for v in &vectors() {
        let (salt, unit) = (v["salt"].as_str().unwrap(), v["unit"].as_str().unwrap());
        let total = v["total"].as_u64().unwrap();
        if salt.is_empty() || unit.is_empty() || total > 1_000_000_000 {
            continue; // an empty salt is refused, an empty unit is missing; weights ≤ 10^9
        }
        let policy = serde_json::json!({
            "version": "salt",
            "context": {"u": {"header": "x-unit"}},
            "flags": [{
                "key": "a_flag_key_that_is_not_the_salt", "salt": salt, "unit": "u",
                "variations": {"only": {}}, "off_variation": "only",
                "default": {"split": [{"variation": "only", "weight": total}]}
            }]
        });
        let policy = switchyard_policy::load(&policy.to_string()).unwrap();
        let request = switchyard_policy::Request {
            headers: vec![("x-unit".into(), unit.into())],
            ..Default::default()
        };
        let out: Value =
            serde_json::from_str(&policy.eval_json(&policy.evaluate(&request))).unwrap();
        assert_eq!(
            out["decisions"][0]["bucket"], v["point"],
            "salt {salt:?}, unit {unit:?}, total {total}"
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} vectors fit a split");
}
