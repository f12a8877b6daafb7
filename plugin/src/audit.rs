//! One audit line per configured policy change. Envoy configures a policy in a new root context
//! per worker (at start, and on every ECDS push or listener update), and those contexts share
//! nothing but the VM's shared data. So each configure records the text of the policy it puts
//! in force (the configuration, or the fetched documents it joins) in shared data with
//! compare-and-swap, and only the context that wins the swap logs
//! `switchyard: policy swap: OLD -> NEW, hash H, WHAT CHANGED`; the others see the same record
//! and stay quiet. Swaps of fetched policies are logged by [`crate::remote`], which records
//! them here too ([`fetched`]), so a configuration that drops fetched consent records is
//! compared with the records that were in force, not with the previous configuration.

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;
use switchyard_policy::{load_with, summarize_change, Awaiting, CompiledPolicy, LoadOptions};

/// Shared-data key: `<content hash>\n<awaiting>\n<policy text>` of the policy last put in
/// force, `<awaiting>` being `p` and `c` for [`Awaiting`]'s parts (`-` for neither).
const KEY: &str = "switchyard.configured";

fn awaiting_tag(awaiting: Awaiting) -> &'static str {
    match (awaiting.policy, awaiting.consent) {
        (false, false) => "-",
        (true, false) => "p",
        (false, true) => "c",
        (true, true) => "pc",
    }
}

fn awaiting_of(tag: &str) -> Awaiting {
    Awaiting {
        policy: tag.contains('p'),
        consent: tag.contains('c'),
    }
}

/// The shared record of a policy in force ([`KEY`]).
fn record(hash: &str, tag: &str, text: &str) -> String {
    format!("{hash}\n{tag}\n{text}")
}

/// Records a fetched policy put in force (already logged by the fetcher).
pub fn fetched(text: &str, policy: &CompiledPolicy) {
    let record = record(policy.content_hash(), awaiting_tag(policy.awaiting()), text);
    let cas = hostcalls::get_shared_data(KEY)
        .ok()
        .and_then(|(_, cas)| cas);
    let _ = hostcalls::set_shared_data(KEY, Some(record.as_bytes()), cas);
}

/// Records `text` as the policy in force and logs the swap if this context is the first to
/// see it.
pub fn configured(text: &str, policy: &CompiledPolicy, options: &LoadOptions) {
    // The policy's own hash, so the line names the hash every exposure event carries.
    let hash = policy.content_hash();
    let tag = awaiting_tag(policy.awaiting());
    let (previous, cas) = match hostcalls::get_shared_data(KEY) {
        Ok((value, cas)) => (value.and_then(|v| String::from_utf8(v).ok()), cas),
        Err(status) => {
            crate::warn(&format!(
                "switchyard: cannot read shared data {KEY} ({status:?}); no audit line"
            ));
            return;
        }
    };
    let previous = previous.as_deref().and_then(|p| {
        let (old_hash, rest) = p.split_once('\n')?;
        let (old_tag, body) = rest.split_once('\n')?;
        Some((old_hash, old_tag, body))
    });
    if previous.is_some_and(|(old_hash, old_tag, _)| old_hash == hash && old_tag == tag) {
        return; // another worker's context recorded (and logged) this policy already
    }
    let record = record(hash, tag, text);
    if hostcalls::set_shared_data(KEY, Some(record.as_bytes()), cas).is_err() {
        return; // another context won the race with this same change
    }
    let old = previous.and_then(|(_, old_tag, body)| {
        let options = LoadOptions {
            awaiting: awaiting_of(old_tag),
            ..options.clone()
        };
        load_with(body, &options).ok()
    });
    crate::log(
        LogLevel::Info,
        &format!(
            "switchyard: policy swap: {} -> {}, hash {hash}, {}",
            old.as_ref().map_or("none", |p| p.version()),
            policy.version(),
            summarize_change(old.as_ref(), policy)
        ),
    );
}
