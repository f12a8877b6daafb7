//! switchyard's policy engine: parse, validate, compile and evaluate rollout policies.
//!
//! This crate has no proxy-wasm dependency: the Envoy filter (`switchyard-plugin`), the
//! `switchyard` command and the tests all evaluate requests through [`CompiledPolicy`], so they
//! give the same answer for the same request.
//!
//! ```text
//! JSON text --document--> validated model --compile--> CompiledPolicy --evaluate(Request)--> Outcome
//! ```

mod bucket;
pub mod compare;
mod compile;
mod diff;
mod digits;
mod document;
mod error;
mod evaluate;
mod event;
mod json_out;
pub mod limits;
mod matching;
mod model;
mod names;
mod outcome;
mod owned;
mod pattern;
mod pieces;
mod regex_examples;
mod render;
mod repeated_keys;
mod request;
pub mod simulate;
pub mod tree;

pub use bucket::bucket_point;
pub use compile::OWNED_PREFIX;
pub use compile::{CompiledPolicy, FlagInfo, Settings};
pub use diff::{content_hash, summarize_change};
pub use error::{quoted, PolicyError, PolicyErrors, MAX_LISTED_ERRORS};
pub use event::{add_upstream, EventInfo, UpstreamResult};
pub use json_out::json_str as push_json_string;
pub use model::{RemoteSource, UntilFetched};
pub use outcome::{Decision, ErrorCode, Outcome, Reason, Reject, RuleRef};
pub use request::{ip_without_port, Request};

/// Parses, validates and compiles a policy document. Every problem is reported, each with its
/// place in the document; nothing is compiled from a document that has any.
pub fn load(json: &str) -> Result<CompiledPolicy, PolicyErrors> {
    load_with(json, &LoadOptions::default())
}

/// What the host knows that the policy text does not (in Envoy: the node metadata).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The environment the proxy declares; a policy for another environment is refused, so a
    /// staging policy cannot load in production.
    pub environment: Option<String>,
    /// Key for pseudonymous unit ids, when the policy does not set `settings.pseudonym_key`.
    pub pseudonym_key: Option<[u8; 16]>,
    /// Which of the host's remote sources have not delivered a first document yet, so their
    /// part of the policy is not known to be current.
    pub awaiting: Awaiting,
    /// The host calls the filter on the request only (the request-only module,
    /// `switchyard_plugin_request_only.wasm`, exports no response callback): settings that act
    /// on the response are refused, since they would silently do nothing.
    pub request_only: bool,
}

/// The parts of a policy whose remote source has not delivered a first document (in Envoy: a
/// proxy that started while its policy server was unreachable). Until it does, the policy in
/// hand may be older than what the operator decided: a kill switch or an opt-out recorded at
/// the source since the bootstrap was written would be lost. So, as OpenFeature does for a
/// provider that is not ready, the engine serves the safe answer with `PROVIDER_NOT_READY`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Awaiting {
    /// Every flag in scope serves its `off_variation` (after consent), reason `ERROR`.
    pub policy: bool,
    /// Every consent-gated flag in scope denies, reason `CONSENT_DENIED`.
    pub consent: bool,
}

/// [`load`] with host-provided options.
pub fn load_with(json: &str, options: &LoadOptions) -> Result<CompiledPolicy, PolicyErrors> {
    match document::parse(json) {
        (Some(model), errors) => compile::compile(model, errors, options).map(|mut policy| {
            policy.content_hash = content_hash(json);
            policy
        }),
        (None, errors) => Err(errors),
    }
}

/// The text of a JSON string literal (`"caf\u00e9"` → `café`), read by the policy reader's
/// own parser; `None` for anything else.
pub fn json_string(literal: &str) -> Option<String> {
    match repeated_keys::parse(literal, &bumpalo::Bump::new()) {
        Ok((tree::Value::String(text), _)) => Some(text.to_string()),
        _ => None,
    }
}

/// A 128-bit key from 32 hexadecimal digits (as node metadata gives it).
pub fn parse_key(text: &str) -> Option<[u8; 16]> {
    document::parse_key(text)
}
