//! The audit line for a policy swap: old and new version, a content hash, and what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::compile::{CompiledPolicy, CompiledServe};
use crate::model::ConsentState;

/// A content hash of a policy's text: XXH3-128 as 32 hex digits (`xxhsum -H2` gives the same).
pub fn content_hash(text: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// One line saying what changed from `old` (none at first load) to `new`: flags added and
/// removed, kill switches toggled, split weights changed, consent records added, removed and
/// changed.
pub fn summarize_change(old: Option<&CompiledPolicy>, new: &CompiledPolicy) -> String {
    let mut s = String::new();
    let Some(old) = old else {
        let _ = write!(
            s,
            "first policy: {} flag(s), {} consent record(s)",
            new.flags.len(),
            consent_records(new).len()
        );
        return s;
    };
    let old_flags: BTreeMap<&str, usize> = old
        .flags
        .iter()
        .enumerate()
        .map(|(i, f)| (f.key.as_str(), i))
        .collect();
    let new_flags: BTreeMap<&str, usize> = new
        .flags
        .iter()
        .enumerate()
        .map(|(i, f)| (f.key.as_str(), i))
        .collect();
    let added: Vec<&str> = new_flags
        .keys()
        .filter(|k| !old_flags.contains_key(*k))
        .copied()
        .collect();
    let removed: Vec<&str> = old_flags
        .keys()
        .filter(|k| !new_flags.contains_key(*k))
        .copied()
        .collect();
    let mut parts: Vec<String> = Vec::new();
    if !added.is_empty() {
        parts.push(format!("flags added [{}]", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("flags removed [{}]", removed.join(", ")));
    }
    for (key, &ni) in &new_flags {
        let Some(&oi) = old_flags.get(key) else {
            continue;
        };
        let (o, n) = (&old.flags[oi], &new.flags[ni]);
        if o.enabled != n.enabled {
            parts.push(format!(
                "kill switch {key}: {}",
                if n.enabled {
                    "off (flag enabled)"
                } else {
                    "ON (flag disabled)"
                }
            ));
        }
        let (os, ns) = (splits(o), splits(n));
        for (place, weights) in &ns {
            match os.get(place) {
                Some(before) if before != weights => {
                    parts.push(format!("split {key} {place}: {before} -> {weights}"))
                }
                None => parts.push(format!("split {key} {place}: new {weights}")),
                _ => {}
            }
        }
        for place in os.keys().filter(|p| !ns.contains_key(*p)) {
            parts.push(format!("split {key} {place}: removed"));
        }
    }
    let (oc, nc) = (consent_records(old), consent_records(new));
    let old_keys: BTreeSet<(&str, &str)> =
        oc.keys().map(|(t, c)| (t.as_str(), c.as_str())).collect();
    let new_keys: BTreeSet<(&str, &str)> =
        nc.keys().map(|(t, c)| (t.as_str(), c.as_str())).collect();
    let c_added = new_keys.difference(&old_keys).count();
    let c_removed = old_keys.difference(&new_keys).count();
    let c_changed = nc
        .iter()
        .filter(|(k, v)| oc.get(*k).is_some_and(|o| o != *v))
        .count();
    if c_added + c_removed + c_changed > 0 {
        parts.push(format!(
            "consent records: {c_added} added, {c_removed} removed, {c_changed} changed"
        ));
    }
    if parts.is_empty() {
        "no flag, split, kill-switch or consent changes".to_string()
    } else {
        parts.join("; ")
    }
}

/// Every split of a flag as `place → "candidate=5 control=95"`.
fn splits(flag: &crate::compile::CompiledFlag) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let render = |serve: &CompiledServe| -> Option<String> {
        let CompiledServe::Split(split) = serve else {
            return None;
        };
        let mut prev = 0;
        let parts: Vec<String> = split
            .ends
            .iter()
            .map(|(v, end)| {
                let w = end - prev;
                prev = *end;
                format!(
                    "{}={w}",
                    flag.variations.get(*v).map_or("?", |x| x.name.as_str())
                )
            })
            .collect();
        Some(parts.join(" "))
    };
    for (i, rule) in flag.rules.iter().enumerate() {
        if let Some(r) = render(&rule.serve) {
            let name = rule.name.clone().unwrap_or_else(|| format!("rules[{i}]"));
            out.insert(format!("rule \"{name}\""), r);
        }
    }
    if let Some(r) = render(&flag.default) {
        out.insert("default".to_string(), r);
    }
    out
}

/// (tenant, class) → state, for every record that is not `unset`.
fn consent_records(p: &CompiledPolicy) -> BTreeMap<(String, String), &'static str> {
    let mut out = BTreeMap::new();
    let Some(c) = &p.consent else { return out };
    for (tenant, states) in &c.tenants {
        for (ci, state) in states.iter().enumerate() {
            let name = match state {
                ConsentState::OptIn => "opt_in",
                ConsentState::OptOut => "opt_out",
                ConsentState::Unset => continue,
            };
            let class = c.class_names.get(ci).cloned().unwrap_or_default();
            out.insert((tenant.to_string(), class), name);
        }
    }
    out
}
