//! The plugin configuration is the policy document itself. Envoy's
//! `configuration: {"@type": "type.googleapis.com/google.protobuf.StringValue", value: ...}`
//! arrives here as the string's bytes, verbatim; a `google.protobuf.Struct` arrives as its
//! serialized protobuf bytes, which [`struct_config`] turns back into JSON text.

use proxy_wasm::hostcalls;
use proxy_wasm::types::BufferType;
use switchyard_policy::{CompiledPolicy, LoadOptions};

use crate::struct_config;

/// The configuration's text (the policy JSON, given as it is or as a Struct), checked to be
/// UTF-8 and not empty. On failure,
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
    policy_text(&bytes).map_err(|message| vec![format!("policy: {message}")])
}

/// Compiles configuration bytes without node options: [`read`] and [`compile_with`] without
/// a host.
#[cfg(test)]
pub fn compile(bytes: &[u8]) -> Result<CompiledPolicy, Vec<String>> {
    let text = policy_text(bytes).map_err(|message| vec![format!("policy: {message}")])?;
    compile_with(&text, &LoadOptions::default())
}

/// Compiles policy text with what the proxy declares (see [`crate::node`]).
pub fn compile_with(text: &str, options: &LoadOptions) -> Result<CompiledPolicy, Vec<String>> {
    switchyard_policy::load_with(text, options).map_err(|errors| errors.lines())
}

/// The policy's JSON text: the configuration as given (a `StringValue`), or the JSON of a
/// serialized `Struct`.
fn policy_text(bytes: &[u8]) -> Result<String, String> {
    // A serialized Struct starts with its first entry's tag, 0x0a. That is also a newline, so
    // text that fails to decode as a Struct but looks like JSON is read as JSON.
    if bytes.first() == Some(&0x0a) {
        match struct_config::to_json(bytes) {
            Ok(json) => return Ok(json),
            Err(problem) if !looks_like_json(bytes) => {
                return Err(format!(
                    "the plugin configuration is neither policy JSON text nor a serialized \
                     google.protobuf.Struct ({problem})"
                ))
            }
            Err(_) => {}
        }
    }
    json_text(bytes).map(str::to_string)
}

fn looks_like_json(bytes: &[u8]) -> bool {
    json_text(bytes).is_ok_and(|text| text.trim_start().starts_with('{'))
}

fn json_text(bytes: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "the plugin configuration is not UTF-8 text ({e}); it must be the policy JSON, \
             given as a google.protobuf.StringValue or a google.protobuf.Struct"
        )
    })?;
    // Editors on some systems prefix a byte-order mark; JSON parsers refuse it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(
            "the plugin configuration is empty; it must be the policy JSON, given as \
                    a google.protobuf.StringValue or a google.protobuf.Struct"
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
        let bad_struct = compile(b"\x0a\x7f\x0a").err().unwrap_or_default();
        assert!(
            bad_struct[0].starts_with(
                "policy: the plugin configuration is neither policy JSON text nor a serialized \
                 google.protobuf.Struct (length 127 runs past the end of its message at byte 2)"
            ),
            "{bad_struct:?}"
        );
    }

    #[test]
    fn a_struct_configuration_compiles_to_the_same_policy() -> Result<(), String> {
        let text = include_str!("../../examples/support-copilot/policy.json");
        let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let map = doc.as_object().ok_or("the example is not an object")?;
        let bytes = crate::struct_encode::encode_struct(map);
        let from_struct = compile(&bytes).map_err(|e| e.join("\n"))?;
        let from_text = compile(text.as_bytes()).map_err(|e| e.join("\n"))?;
        assert_eq!(from_struct.version(), from_text.version());
        assert_eq!(from_struct.flags().len(), from_text.flags().len());
        // What a request gets matches, on one the policy splits (internal variation indexes
        // differ: the Struct's variations come sorted by name).
        let request = switchyard_policy::Request {
            path: "/v1/chat/completions".into(),
            headers: vec![
                ("x-plan".into(), "pro".into()),
                ("x-conversation-id".into(), "c-1".into()),
            ],
            ..Default::default()
        };
        let (a, b) = (from_struct.evaluate(&request), from_text.evaluate(&request));
        assert_eq!(a.cluster, Some("support_model_a"));
        assert_eq!(from_struct.outcome_json(&a), from_text.outcome_json(&b));
        assert_eq!(
            from_struct.exposure_headers(&a),
            from_text.exposure_headers(&b)
        );
        Ok(())
    }

    #[test]
    fn json_text_that_starts_with_a_newline_is_still_json() {
        let text = format!(
            "\n{}",
            include_str!("../../examples/support-copilot/policy.json")
        );
        assert!(compile(text.as_bytes()).is_ok());
    }
}
