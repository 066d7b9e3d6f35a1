//! Bedrock through Latchkey: requests are re-signed with AWS SigV4 using the stored credential
//! and verified by a mock that recomputes the signature with botocore; boto3 works end to end.
//!
//! Needs a Python with `botocore` and `boto3` (`.ci/run` installs them into `.venv` and sets
//! `LATCHKEY_TEST_PYTHON`); outside CI the test is skipped without one.

mod common;

use common::{free_port, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const AWS_SECRET: &str = "LatchkeyTestSecret/0123456789+abcdefghijKLMN";
const MODEL_PATH: &str = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0";

struct BedrockMock {
    child: Child,
    url: String,
}

impl Drop for BedrockMock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_mock(py: &str) -> BedrockMock {
    let port = free_port();
    let mut child = Command::new(py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/bedrock_mock.py"
        ))
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY", "the Bedrock mock did not start");
    BedrockMock {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test]
async fn requests_are_re_signed_and_boto3_works_end_to_end() {
    let Some(py) = common::python() else {
        eprintln!("skipping: set LATCHKEY_TEST_PYTHON to a python with boto3");
        return;
    };
    let mock = start_mock(&py);
    let s = Server::start().await;
    s.point("bedrock", &mock.url).await;
    // `latchkey connect bedrock` takes the AWS credential as JSON on stdin (pretty-printed is
    // fine; it is stored compact).
    let login = s.cli(&["login", "--url", &s.admin_url, "--token", &s.token], None);
    assert!(login.status.success());
    let cred = format!(
        "{{\n  \"access_key_id\": \"AKIDLATCHKEYTEST\",\n  \"secret_access_key\": \"{AWS_SECRET}\",\n  \"region\": \"us-east-1\"\n}}\n"
    );
    let out = s.cli(&["connect", "bedrock"], Some(&cred));
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(AWS_SECRET));
    let bad = s.cli(&["connect", "bedrock"], Some("{\"access_key_id\": \"x\"}"));
    assert!(
        !bad.status.success(),
        "an incomplete AWS credential is refused"
    );
    let (_, k) = s
        .key(json!({"name": "bedrock-agent", "providers": ["bedrock"]}))
        .await;

    // A bearer-token client (model id with `:` percent-encoded, as SDKs send it).
    let body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hi"}]});
    let resp = s
        .http
        .post(format!("{}/proxy/bedrock{MODEL_PATH}/invoke", s.gateway))
        .bearer_auth(&k)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "the mock verified Latchkey's signature: {v}");
    assert_eq!(v["content"][0]["text"], json!("hi"));

    // The mock refuses a request whose signature does not verify.
    let tampered = s
        .http
        .post(format!("{}{MODEL_PATH}/invoke", mock.url))
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDLATCHKEYTEST/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
        .header("x-amz-date", "20260101T000000Z")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 403);

    // boto3, signing with the proxy key as its access key id.
    let endpoint = format!("{}/proxy/bedrock", s.gateway);
    let v = common::run_python(&py, "boto3_bedrock.py", vec![endpoint, k.clone()]).await;
    assert_eq!(v["invoke"], json!("hi"));
    assert_eq!(v["converse"], json!("hi"));
    assert!(v["invoke_stream_chunks"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(
        !v["converse_stream"].as_str().unwrap_or("").is_empty(),
        "{v}"
    );

    // What the provider received: verified signatures, never the proxy key.
    let seen: Value = s
        .http
        .get(format!("{}/_mock/requests", mock.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = seen
        .as_array()
        .or_else(|| seen["requests"].as_array())
        .cloned()
        .unwrap_or_default();
    let via_gateway: Vec<&Value> = rows
        .iter()
        .filter(|r| r.to_string().contains("claude-3-5-sonnet"))
        .collect();
    assert!(via_gateway.len() >= 5, "{seen}");
    assert!(
        !seen.to_string().contains(&k),
        "the proxy key reached the provider"
    );
}
