//! A policy with problems is refused whole, every problem is logged with its place, and a
//! refused reconfiguration leaves the running policy alone.

use switchyard_host_tests::LogLevel;

use crate::common;

/// Several independent mistakes: an unknown field, an undefined variation in a split, an
/// unknown segment, an unknown context attribute.
const BAD_POLICY: &str = r#"{
  "version": "bad-1",
  "context": {"tenant": {"header": "x-tenant-id"}, "conversation": {"header": "x-conversation-id"}},
  "flags": [
    {
      "key": "support_answer_model_route",
      "unit": "conversation",
      "enabeld": true,
      "variations": {"control": {"cluster": "a"}, "candidate": {"cluster": "b"}},
      "off_variation": "control",
      "rules": [
        {"when": [{"segment": "no_such_segment"}], "serve": "candidate"},
        {"when": [{"attribute": "no_such_attribute", "op": "in", "values": ["x"]}], "serve": "control"},
        {"split": [{"variation": "canddate", "weight": 5}, {"variation": "control", "weight": 95}]}
      ],
      "default": {"serve": "control"}
    }
  ]
}"#;

fn rejection_lines(host: &switchyard_host_tests::FakeHost) -> Vec<String> {
    host.logs()
        .iter()
        .filter(|log| log.message.starts_with("switchyard: policy rejected: "))
        .inspect(|log| assert_eq!(log.level, LogLevel::Error, "{}", log.message))
        .map(|log| log.message.clone())
        .collect()
}

#[test]
fn a_bad_policy_is_refused_and_every_error_is_logged_with_its_place() {
    let errors = switchyard_policy::load(BAD_POLICY).expect_err("the policy is bad");
    assert!(errors.len() >= 3, "expected several problems, got {errors}");

    let mut host = common::host();
    assert!(!host.configure(BAD_POLICY.as_bytes()).unwrap());
    let lines = rejection_lines(&host);
    for error in errors.iter() {
        assert!(!error.place.is_empty(), "{error} has a place");
        let line = format!(
            "switchyard: policy rejected: {}: {}",
            error.place, error.message
        );
        assert!(
            lines.contains(&line),
            "missing log line {line:?} in {lines:#?}"
        );
    }
    assert_eq!(lines.len(), errors.len(), "one line per error: {lines:#?}");
    assert_eq!(host.metric("switchyard.policy.load_failures"), Some(1));
    // The place of the misspelled variation, as the contract's example puts it.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("flags[0].rules[2].split") && l.contains("canddate")),
        "{lines:#?}"
    );
}

#[test]
fn empty_and_non_json_configurations_are_refused() {
    for configuration in [&b""[..], b"   ", b"not json", b"\xff\xfe", b"[]", b"{}"] {
        let mut host = common::host();
        assert!(
            !host.configure(configuration).unwrap(),
            "{:?} was accepted",
            String::from_utf8_lossy(configuration)
        );
        let lines = rejection_lines(&host);
        assert!(
            !lines.is_empty(),
            "no rejection logged for {configuration:?}"
        );
        assert_eq!(host.metric("switchyard.policy.load_failures"), Some(1));
        assert!(host.broken().is_none());
    }
}

/// Given as a `google.protobuf.Struct`, the same bad policy is refused with the same placed
/// errors; Struct bytes that do not decode are refused with the byte where they break.
#[test]
fn a_bad_struct_policy_is_refused_with_the_same_places() {
    let errors = switchyard_policy::load(BAD_POLICY).expect_err("the policy is bad");
    let mut host = common::host();
    assert!(!host.configure(&common::struct_bytes(BAD_POLICY)).unwrap());
    let lines = rejection_lines(&host);
    for error in errors.iter() {
        let line = format!(
            "switchyard: policy rejected: {}: {}",
            error.place, error.message
        );
        assert!(lines.contains(&line), "missing {line:?} in {lines:#?}");
    }
    assert_eq!(lines.len(), errors.len(), "{lines:#?}");

    let good = common::struct_bytes(&common::example_policy());
    let mut host = common::host();
    assert!(!host.configure(&good[..good.len() - 3]).unwrap());
    let lines = rejection_lines(&host);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "switchyard: policy rejected: policy: the plugin configuration is neither policy \
             JSON text nor a serialized google.protobuf.Struct ("
        ) && lines[0].contains(" at byte "),
        "{lines:#?}"
    );
    assert!(host.broken().is_none());
}

#[test]
fn a_refused_reconfiguration_keeps_the_running_policy() {
    let mut host = common::host_with(&common::example_policy());
    assert!(!host.configure(BAD_POLICY.as_bytes()).unwrap());
    assert_eq!(host.metric("switchyard.policy.load_failures"), Some(1));
    let result = host.request(&common::chat("acme", "c-1")).unwrap();
    let upstream = result.upstream().expect("forwarded");
    assert_eq!(
        upstream.get_str("x-switchyard-cluster"),
        Some("support_model_b")
    );
}
