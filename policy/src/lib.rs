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
mod compile;
mod document;
mod error;
mod evaluate;
pub mod limits;
mod matching;
mod model;
mod outcome;
mod render;
mod request;

pub use bucket::bucket_point;
pub use compile::{CompiledPolicy, FlagInfo, Settings};
pub use error::{PolicyError, PolicyErrors};
pub use outcome::{Decision, ErrorCode, Outcome, Reason, Reject, RuleRef};
pub use request::Request;

/// Parses, validates and compiles a policy document. Every problem is reported, each with its
/// place in the document; nothing is compiled from a document that has any.
pub fn load(json: &str) -> Result<CompiledPolicy, PolicyErrors> {
    match document::parse(json) {
        (Some(model), errors) => compile::compile(model, errors),
        (None, errors) => Err(errors),
    }
}
