//! The audit line for a policy swap: old and new version, a content hash, and what changed.

use crate::compile::{CompiledPolicy, CompiledServe};
use crate::model::ConsentState;

/// What changed in the parts awaiting their remote source's first document.
fn awaiting_changes(old: &crate::Awaiting, new: &crate::Awaiting) -> Vec<String> {
    [
        (
            old.policy,
            new.policy,
            "policy",
            "every flag serves its off variation",
        ),
        (
            old.consent,
            new.consent,
            "consent",
            "consent-gated flags deny every tenant",
        ),
    ]
    .into_iter()
    .filter(|(before, after, _, _)| before != after)
    .map(|(_, awaiting, source, safe)| {
        if awaiting {
            format!("{safe} until the {source} source's first document arrives")
        } else {
            format!("the {source} source's first document arrived")
        }
    })
    .collect()
}

/// A content hash of a policy's text: XXH3-128 as 32 hex digits (`xxhsum -H2` gives the same).
pub fn content_hash(text: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// One line saying what changed from `old` (none at first load) to `new`: flags added and
/// removed, kill switches toggled, split weights changed, consent records added, removed and
/// changed. Flags are named in document order. (Plain vectors and the consent tables the
/// policies already have: no sorted collections, which would add to the filter's size.)
pub fn summarize_change(old: Option<&CompiledPolicy>, new: &CompiledPolicy) -> String {
    let Some(old) = old else {
        let mut line = format!(
            "first policy: {} flag(s), {} consent record(s)",
            new.flags.len(),
            consent_record_count(new)
        );
        for part in awaiting_changes(&crate::Awaiting::default(), &new.awaiting) {
            line.push_str("; ");
            line.push_str(&part);
        }
        return line;
    };
    let find = |p: &'_ CompiledPolicy, key: &str| p.flags.iter().position(|f| f.key == key);
    let added: Vec<&str> = new
        .flags
        .iter()
        .filter(|f| find(old, &f.key).is_none())
        .map(|f| f.key.as_str())
        .collect();
    let removed: Vec<&str> = old
        .flags
        .iter()
        .filter(|f| find(new, &f.key).is_none())
        .map(|f| f.key.as_str())
        .collect();
    let mut parts: Vec<String> = Vec::new();
    if !added.is_empty() {
        parts.push(format!("flags added [{}]", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("flags removed [{}]", removed.join(", ")));
    }
    for n in &new.flags {
        let Some(o) = find(old, &n.key).and_then(|i| old.flags.get(i)) else {
            continue;
        };
        let key = &n.key;
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
            match os.iter().find(|(p, _)| p == place) {
                Some((_, before)) if before != weights => {
                    parts.push(format!("split {key} {place}: {before} -> {weights}"))
                }
                None => parts.push(format!("split {key} {place}: new {weights}")),
                _ => {}
            }
        }
        for (place, _) in os.iter().filter(|(p, _)| !ns.iter().any(|(q, _)| q == p)) {
            parts.push(format!("split {key} {place}: removed"));
        }
    }
    parts.extend(awaiting_changes(&old.awaiting, &new.awaiting));
    for (name, before, after) in [
        ("source", &old.source, &new.source),
        ("consent_source", &old.consent_source, &new.consent_source),
    ] {
        match (before, after) {
            (Some(_), None) => parts.push(format!("{name} removed")),
            (None, Some(_)) => parts.push(format!("{name} added")),
            (Some(b), Some(a)) if b != a => parts.push(format!("{name} changed")),
            _ => {}
        }
    }
    let (c_added, c_removed, c_changed) = consent_changes(old, new);
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

/// Every split of a flag as (place, `candidate=5 control=95`), in rule order.
fn splits(flag: &crate::compile::CompiledFlag) -> Vec<(String, String)> {
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
    let mut out = Vec::new();
    for (i, rule) in flag.rules.iter().enumerate() {
        if let Some(r) = render(&rule.serve) {
            let name = rule.name.clone().unwrap_or_else(|| format!("rules[{i}]"));
            out.push((format!("rule \"{name}\""), r));
        }
    }
    if let Some(r) = render(&flag.default) {
        out.push(("default".to_string(), r));
    }
    out
}

/// A tenant's recorded state for a class (by name); `Unset` without a record.
fn state_of(p: &CompiledPolicy, tenant: &str, class: &str) -> ConsentState {
    let Some(c) = &p.consent else {
        return ConsentState::Unset;
    };
    let Some(ci) = c.class_names.iter().position(|n| n == class) else {
        return ConsentState::Unset;
    };
    c.tenants
        .get(tenant)
        .and_then(|row| row.get(ci).copied())
        .unwrap_or(ConsentState::Unset)
}

/// Records (tenant, class) that are not `unset`, visited with their state.
fn for_each_record(p: &CompiledPolicy, mut f: impl FnMut(&str, &str, ConsentState)) {
    if let Some(c) = &p.consent {
        for (tenant, states) in &c.tenants {
            for (ci, state) in states.iter().enumerate() {
                if *state != ConsentState::Unset {
                    f(
                        tenant,
                        c.class_names.get(ci).map_or("", String::as_str),
                        *state,
                    );
                }
            }
        }
    }
}

fn consent_record_count(p: &CompiledPolicy) -> usize {
    let mut n = 0;
    for_each_record(p, |_, _, _| n += 1);
    n
}

/// (added, removed, changed) consent records from `old` to `new`.
fn consent_changes(old: &CompiledPolicy, new: &CompiledPolicy) -> (usize, usize, usize) {
    let (mut added, mut removed, mut changed) = (0, 0, 0);
    for_each_record(new, |tenant, class, state| {
        match state_of(old, tenant, class) {
            ConsentState::Unset => added += 1,
            before if before != state => changed += 1,
            _ => {}
        }
    });
    for_each_record(old, |tenant, class, _| {
        if state_of(new, tenant, class) == ConsentState::Unset {
            removed += 1;
        }
    });
    (added, removed, changed)
}
