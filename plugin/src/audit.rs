//! One audit line per configured policy change. Envoy configures a policy in a new root context
//! per worker (at start, and on every ECDS push or listener update), and those contexts share
//! nothing but the VM's shared data. So each configure records the policy's text in shared data
//! with compare-and-swap, and only the context that wins the swap logs
//! `switchyard: policy swap: OLD -> NEW, hash H, WHAT CHANGED`; the others see the same hash
//! and stay quiet. (Swaps of fetched policies are logged by [`crate::remote`].)

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;
use switchyard_policy::{content_hash, load_with, summarize_change, CompiledPolicy, LoadOptions};

/// Shared-data key: `<content hash>\n<policy text>` of the last configured policy.
const KEY: &str = "switchyard.configured";

/// Records `text` as the configured policy and logs the swap if this context is the first to
/// see it.
pub fn configured(text: &str, policy: &CompiledPolicy, options: &LoadOptions) {
    let hash = content_hash(text);
    let (previous, cas) = match hostcalls::get_shared_data(KEY) {
        Ok((value, cas)) => (value.and_then(|v| String::from_utf8(v).ok()), cas),
        Err(status) => {
            crate::warn(&format!(
                "switchyard: cannot read shared data {KEY} ({status:?}); no audit line"
            ));
            return;
        }
    };
    let previous = previous.as_deref().and_then(|p| p.split_once('\n'));
    if previous.is_some_and(|(old_hash, _)| old_hash == hash) {
        return; // another worker's context recorded (and logged) this policy already
    }
    let record = format!("{hash}\n{text}");
    if hostcalls::set_shared_data(KEY, Some(record.as_bytes()), cas).is_err() {
        return; // another context won the race with this same change
    }
    let old = previous.and_then(|(_, body)| load_with(body, options).ok());
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
