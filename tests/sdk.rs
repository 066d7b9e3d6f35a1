//! The official `openai` Python SDK through Latchkey, configured the way the README says.
//!
//! Needs a Python with `openai` installed: `.ci/run` creates `.venv` and sets
//! `LATCHKEY_TEST_PYTHON`. Outside CI the test is skipped (with a message) when that variable is
//! unset; in CI a missing SDK fails the run.

mod common;

use common::{Mock, Server};
use serde_json::Value;

#[tokio::test]
async fn openai_python_sdk_chat_and_streaming() {
    let Some(py) = common::python() else {
        eprintln!("skipping: set LATCHKEY_TEST_PYTHON to a python with the openai package");
        return;
    };
    let mock = Mock::start().await;
    let s = Server::start().await;
    s.point("openai", &mock.url()).await;
    let token = s.data_dir.join("admin-token");
    let run = |args: &[&str], stdin: Option<&str>| {
        let out = s.cli(args, stdin);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(
        &[
            "login",
            "--url",
            &s.admin_url,
            "--token-file",
            token.to_str().unwrap(),
        ],
        None,
    );
    run(
        &[
            "connect",
            "openai",
            "--label",
            "prod",
            "--workload",
            "production",
        ],
        Some("sk-sdk-real-secret\n"),
    );
    run(
        &[
            "keys",
            "create",
            "--name",
            "my-agent",
            "--provider",
            "openai",
        ],
        None,
    );
    let env = run(&["env"], None);

    let mut cmd = std::process::Command::new(py);
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sdk/openai_sdk.py"
    ))
    .env_remove("OPENAI_API_KEY")
    .env_remove("OPENAI_BASE_URL")
    .env("NO_PROXY", "127.0.0.1");
    for line in env.lines().filter(|l| !l.starts_with('#')) {
        let (k, v) = line.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chat"], "Hello from mock");
    assert_eq!(v["usage"], 6);
    assert_eq!(v["stream"], "Hello from mock");
    assert_eq!(v["stream_chunks"], 3);
    assert_eq!(v["refused_status"], 401);

    let seen = mock.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        2,
        "the refused call must not reach the provider"
    );
    for r in &seen {
        assert_eq!(r.uri.path(), "/v1/chat/completions");
        assert_eq!(r.headers["authorization"], "Bearer sk-sdk-real-secret");
        assert!(!r.all_text().contains("lk_"));
    }
}

#[tokio::test]
async fn anthropic_python_sdk_plain_and_streaming() {
    let Some(py) = common::python() else {
        eprintln!("skipping: set LATCHKEY_TEST_PYTHON to a python with the anthropic package");
        return;
    };
    let mock = Mock::start().await;
    let s = Server::start().await;
    s.point("anthropic", &mock.url()).await;
    s.connect("anthropic", "sk-ant-api03-real-secret-for-tests", &[])
        .await;
    let (_, key) = s
        .key(serde_json::json!({"name": "claude-agent", "providers": ["anthropic"]}))
        .await;
    let base = format!("{}/proxy/anthropic", s.gateway);
    let v = common::run_python(&py, "anthropic_sdk.py", vec![base, key]).await;
    assert_eq!(v["text"], "Hello from mock");
    assert_eq!(v["stream"], "Hello from mock");
    assert_eq!(v["stream_output_tokens"], 4);
    let seen = mock.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.uri.path(), "/v1/messages");
        assert_eq!(r.headers["x-api-key"], "sk-ant-api03-real-secret-for-tests");
        assert!(!r.all_text().contains("lk_"));
    }
}
