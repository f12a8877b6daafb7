//! What the proxy declares about itself in its bootstrap's node metadata, handed to the engine
//! as [`LoadOptions`]:
//!
//! ```yaml
//! node:
//!   metadata:
//!     switchyard_environment: prod                          # policies for other environments are refused
//!     switchyard_pseudonym_key: 000102030405060708090a0b0c0d0e0f   # 32 hex digits
//! ```
//!
//! Where: Envoy 1.40 serves the node under the attribute `xds.node` (its attribute vocabulary),
//! so the path is `["xds", "node", "metadata", KEY]`, and a string value comes back as the
//! string's bytes, verbatim. The older path `["node", "metadata", KEY]` answers `NotFound` in
//! 1.40 (checked in a real Envoy by `envoy/tests/test_remote_source.py`); it is tried second,
//! for older Envoys that still serve it. (A whole message, such as `["xds", "node"]`, comes
//! back as serialized protobuf, not text.) A missing key is no declaration. A value that cannot be read or is not what it must be
//! refuses the configuration: a guard that silently switched itself off would be worse than
//! none.

use proxy_wasm::hostcalls;
use switchyard_policy::LoadOptions;

/// This build is the request-only module (`--features request-only`; `plugin/build.sh` also
/// removes its response callback): every policy it loads, configured or fetched, must not need
/// the response.
pub const REQUEST_ONLY: bool = cfg!(feature = "request-only");

pub const ENVIRONMENT_KEY: &str = "switchyard_environment";
pub const PSEUDONYM_KEY_KEY: &str = "switchyard_pseudonym_key";

/// The load options the node metadata declares; every problem as one `place: message` line.
pub fn load_options() -> Result<LoadOptions, Vec<String>> {
    let mut problems = Vec::new();
    let environment = read(ENVIRONMENT_KEY, &mut problems);
    if let Some(env) = &environment {
        if env.is_empty() {
            problems.push(format!(
                "node.metadata.{ENVIRONMENT_KEY}: is empty; leave it out to declare no environment"
            ));
        }
    }
    let pseudonym_key = match read(PSEUDONYM_KEY_KEY, &mut problems) {
        Some(text) => {
            let key = switchyard_policy::parse_key(&text);
            if key.is_none() {
                problems.push(format!(
                    "node.metadata.{PSEUDONYM_KEY_KEY}: must be 32 hexadecimal digits (a 128-bit key)"
                ));
            }
            key
        }
        None => None,
    };
    if problems.is_empty() {
        Ok(LoadOptions {
            environment,
            pseudonym_key,
            request_only: REQUEST_ONLY,
            ..LoadOptions::default()
        })
    } else {
        Err(problems)
    }
}

fn read(key: &str, problems: &mut Vec<String>) -> Option<String> {
    let found = match hostcalls::get_property(vec!["xds", "node", "metadata", key]) {
        Ok(None) => hostcalls::get_property(vec!["node", "metadata", key]),
        other => other,
    };
    match found {
        Ok(None) => None,
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(_) => {
                problems.push(format!(
                    "node.metadata.{key}: is not a string (the proxy answered non-UTF-8 bytes)"
                ));
                None
            }
        },
        Err(status) => {
            problems.push(format!("node.metadata.{key}: cannot be read ({status:?})"));
            None
        }
    }
}
