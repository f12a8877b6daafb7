//! The plugin configuration is the policy document itself. Envoy's
//! `configuration: {"@type": "type.googleapis.com/google.protobuf.StringValue", value: ...}`
//! arrives here as the string's bytes, verbatim.

use proxy_wasm::hostcalls;
use proxy_wasm::types::BufferType;
use switchyard_policy::{CompiledPolicy, LoadOptions};

/// The configuration's text (the policy JSON), checked to be UTF-8 and not empty. On failure,
/// the problem as one `place: message` line (the engine's own format; problems with the
/// configuration as a whole use the place `policy`).
pub fn read(configuration_size: usize) -> Result<String, Vec<String>> {
    let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, configuration_size)
    {
        Ok(bytes) => bytes.unwrap_or_default(),
        Err(status) => {
            return Err(vec![format!(
                "policy: the plugin configuration could not be read ({status:?})"
            )])
        }
    };
    policy_text(&bytes)
        .map(str::to_string)
        .map_err(|message| vec![format!("policy: {message}")])
}

/// Compiles configuration bytes without node options: [`read`] and [`compile_with`] without
/// a host.
#[cfg(test)]
pub fn compile(bytes: &[u8]) -> Result<CompiledPolicy, Vec<String>> {
    let text = policy_text(bytes).map_err(|message| vec![format!("policy: {message}")])?;
    compile_with(text, &LoadOptions::default())
}

/// Compiles policy text with what the proxy declares (see [`crate::node`]).
pub fn compile_with(text: &str, options: &LoadOptions) -> Result<CompiledPolicy, Vec<String>> {
    switchyard_policy::load_with(text, options)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

fn policy_text(bytes: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!("the plugin configuration is not UTF-8 text ({e}); it must be the policy JSON")
    })?;
    // Editors on some systems prefix a byte-order mark; JSON parsers refuse it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(
            "the plugin configuration is empty; it must be the policy JSON, given as \
                    a google.protobuf.StringValue"
                .to_string(),
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_binary_configurations_are_errors() {
        let empty = compile(b"  \n").err().unwrap_or_default();
        assert_eq!(empty.len(), 1);
        assert!(empty[0].starts_with("policy: the plugin configuration is empty"));
        let binary = compile(b"\xff{}").err().unwrap_or_default();
        assert!(binary[0].contains("not UTF-8"));
    }
}
