//! `latchkey policy test`: evaluates a policy file against a sample request, offline, with the
//! real binary.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

const POLICY: &str = r#"
name = "agents"
default = "allow"

[[rule]]
id = "no-shell"
action = "block"
message = "agents may not offer a shell tool"
[rule.match]
tools = ["shell_*"]

[[rule]]
id = "redact-pii"
action = "redact"
[rule.match]
prompt_regex = ["@"]
[rule.redact]
detectors = ["email"]
"#;

fn run(dir: &std::path::Path, policy: &str, sample: &str) -> (i32, String, String) {
    std::fs::write(dir.join("p.toml"), policy).unwrap();
    std::fs::write(dir.join("s.json"), sample).unwrap();
    let out = Command::new(BIN)
        .args(["--json", "policy", "test"])
        .arg(dir.join("p.toml"))
        .arg(dir.join("s.json"))
        .env_remove("LATCHKEY_ADMIN_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn first_matching_rule_decides_and_the_default_applies_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let shell = r#"{"provider": "openai", "path": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                 "tools": [{"type": "function", "function": {"name": "shell_exec"}}]}}"#;
    let (code, out, err) = run(dir.path(), POLICY, shell);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["action"], "block", "{v}");
    assert_eq!(v["decision"]["rule_id"], "no-shell", "{v}");
    assert_eq!(v["enforced_action"], "block");

    let email = r#"{"provider": "anthropic", "path": "/v1/messages",
        "body": {"model": "claude", "messages": [{"role": "user", "content": "mail bob@example.com"}]}}"#;
    let v: serde_json::Value = serde_json::from_str(&run(dir.path(), POLICY, email).1).unwrap();
    assert_eq!(v["decision"]["action"], "redact", "{v}");
    assert_eq!(v["decision"]["rule_id"], "redact-pii", "{v}");

    let plain = r#"{"provider": "openai", "path": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}}"#;
    let v: serde_json::Value = serde_json::from_str(&run(dir.path(), POLICY, plain).1).unwrap();
    assert_eq!(v["decision"]["action"], "allow", "{v}");
    assert!(v["decision"]["rule_id"].is_null(), "{v}");

    // Shadow mode: the decision is reported but not enforced.
    let shadow = POLICY.replace(
        "default = \"allow\"",
        "default = \"allow\"\nmode = \"shadow\"",
    );
    let v: serde_json::Value = serde_json::from_str(&run(dir.path(), &shadow, shell).1).unwrap();
    assert_eq!(v["decision"]["action"], "block", "{v}");
    assert_eq!(v["enforced_action"], "allow", "{v}");
}

#[test]
fn invalid_policy_fails_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let sample = r#"{"provider": "openai", "path": "/v1/models"}"#;
    let (code, _, err) = run(dir.path(), &POLICY.replace("tools =", "toolz ="), sample);
    assert_ne!(code, 0);
    assert!(err.contains("toolz"), "{err}");
    let (code, _, err) = run(
        dir.path(),
        &POLICY.replace("[\"@\"]", "[\"(unclosed\"]"),
        sample,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("redact-pii") && err.contains("(unclosed"),
        "{err}"
    );
}
