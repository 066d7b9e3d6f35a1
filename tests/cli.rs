//! End-to-end: the CLI as the README shows it, audit verification, startup errors.

mod common;

use common::{Mock, Server};
use reqwest::Method;
use serde_json::{json, Value};

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test]
async fn readme_flow_login_connect_create_env_then_proxy() {
    let mock = Mock::start().await;
    let s = Server::start().await;
    s.point("openai", &mock.url()).await;
    let token_file = s.data_dir.join("admin-token");

    // Mode 0600 on every secret file the server creates.
    for f in ["admin-token", "root.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.data_dir.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    ok(&s.cli(
        &[
            "login",
            "--url",
            &s.admin_url,
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        None,
    ));
    let out = ok(&s.cli(
        &[
            "connect",
            "openai",
            "--label",
            "prod",
            "--workload",
            "production",
        ],
        Some("sk-from-stdin-123\n"),
    ));
    assert!(out.contains("Connected openai"), "{out}");
    assert!(!out.contains("sk-from-stdin-123"));
    let out = ok(&s.cli(
        &[
            "keys",
            "create",
            "--name",
            "my-agent",
            "--provider",
            "openai",
        ],
        None,
    ));
    let key = out.lines().next().unwrap().trim().to_string();
    assert!(key.starts_with("lk_"), "{out}");

    let env = ok(&s.cli(&["env"], None));
    let vars: std::collections::HashMap<&str, &str> = env
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    assert_eq!(vars["OPENAI_API_KEY"], key);
    assert_eq!(
        vars["OPENAI_BASE_URL"],
        format!("{}/proxy/openai/v1", s.gateway)
    );

    // Use the two variables the way an SDK would.
    let r = s
        .http
        .post(format!("{}/chat/completions", vars["OPENAI_BASE_URL"]))
        .bearer_auth(vars["OPENAI_API_KEY"])
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = mock.last();
    assert_eq!(seen.uri.path(), "/v1/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer sk-from-stdin-123");

    // --json on list commands is machine-readable.
    let v: Value = serde_json::from_str(&ok(&s.cli(&["--json", "keys", "list"], None))).unwrap();
    assert_eq!(v["keys"][0]["name"], "my-agent");
    assert!(v["keys"][0].get("hash").is_none());
    let v: Value = serde_json::from_str(&ok(&s.cli(&["--json", "providers"], None))).unwrap();
    let openai = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "openai")
        .unwrap();
    assert_eq!(openai["credentials"], 1);
    assert_eq!(openai["capabilities"]["auth_scheme"], "bearer");
    let v: Value = serde_json::from_str(&ok(&s.cli(&["--json", "status"], None))).unwrap();
    assert_eq!(v["store"]["ok"], true);

    // Update and revoke through the CLI.
    let id = v_key_id(&s);
    ok(&s.cli(
        &[
            "keys",
            "update",
            &id,
            "--name",
            "renamed",
            "--expires-in",
            "7d",
        ],
        None,
    ));
    let (_, k) = s.admin(Method::GET, &format!("keys/{id}"), None).await;
    assert_eq!(k["name"], "renamed");
    assert!(k["expires_at"].is_string());
    ok(&s.cli(&["keys", "revoke", &id], None));
    let r = s
        .http
        .get(format!("{}/models", vars["OPENAI_BASE_URL"]))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Bad input is a clear error, not a crash.
    let out = s.cli(&["connect", "openai"], Some(""));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no secret given"));
    let out = s.cli(&["connect", "nosuch"], Some("x"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no provider"));
    ok(&s.cli(&["logout"], None));
    let out = s.cli(&["status"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not logged in"));
}

fn v_key_id(s: &Server) -> String {
    let v: Value = serde_json::from_str(&ok(&s.cli(&["--json", "keys", "list"], None))).unwrap();
    v["keys"][0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn audit_verify_names_the_first_edited_deleted_or_reordered_row() {
    let mock = Mock::start().await;
    let mut s = Server::start().await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", "sk-x", &[]).await;
    let (_, key) = s.key(json!({"name": "a", "providers": ["openai"]})).await;
    for _ in 0..5 {
        s.http
            .get(format!("{}/proxy/openai/v1/models", s.gateway))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
    }
    let token = s.data_dir.join("admin-token");
    ok(&s.cli(
        &[
            "login",
            "--url",
            &s.admin_url,
            "--token-file",
            token.to_str().unwrap(),
        ],
        None,
    ));
    let stopped = s.stop();
    assert!(stopped.success());
    s.spawn(&[]).await;
    ok(&s.cli(
        &[
            "login",
            "--url",
            &s.admin_url,
            "--token-file",
            token.to_str().unwrap(),
        ],
        None,
    ));
    let out = ok(&s.cli(&["audit", "verify"], None));
    assert!(out.contains("chain main: OK"), "{out}");

    // Someone with database access flips a decision.
    let db = rusqlite::Connection::open(s.db_path()).unwrap();
    let n = db
        .execute(
            "UPDATE audit SET event = replace(event, '\"decision\":\"allow\"', '\"decision\":\"deny\"') WHERE seq = 6",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    let out = s.cli(&["audit", "verify"], None);
    assert!(!out.status.success(), "verify passed on an edited row");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BROKEN at seq 6"), "{text}");
    let (_, v) = s.admin(Method::GET, "audit/verify", None).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["chains"][0]["first_broken_seq"], 6);

    // Deleting a row instead is caught too.
    db.execute(
        "UPDATE audit SET event = replace(event, '\"decision\":\"deny\"', '\"decision\":\"allow\"') WHERE seq = 6",
        [],
    )
    .unwrap();
    ok(&s.cli(&["audit", "verify"], None));
    db.execute("DELETE FROM audit WHERE seq = 4", []).unwrap();
    let out = s.cli(&["--json", "audit", "verify"], None);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chains"][0]["first_broken_seq"], 4);
}

#[tokio::test]
async fn admin_api_requires_a_valid_token_and_validates_input() {
    let s = Server::start().await;
    let r = s
        .http
        .get(format!("{}/api/v1/keys", s.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .http
        .get(format!("{}/api/v1/keys", s.admin_url))
        .bearer_auth("lk_adm_notarealtokenatall")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (st, v) = s
        .admin(
            Method::POST,
            "keys",
            Some(json!({"name": "x", "providers": []})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, _) = s
        .admin(
            Method::POST,
            "keys",
            Some(json!({"name": "x", "providers": ["nosuch"]})),
        )
        .await;
    assert_eq!(st, 400);
    let (st, v) = s
        .admin(
            Method::POST,
            "credentials",
            Some(json!({"provider": "openai", "value": 42})),
        )
        .await;
    assert_eq!(st, 400);
    assert!(!v.to_string().contains("42"));
    let (st, _) = s
        .admin(
            Method::POST,
            "credentials",
            Some(json!({"provider": "openai", "value": "  "})),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s.admin(Method::GET, "keys/key_nope", None).await;
    assert_eq!(st, 404);
    let (st, v) = s
        .admin(
            Method::PATCH,
            "providers/openai",
            Some(json!({"base_url": "ftp://x"})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = s
        .admin(
            Method::PATCH,
            "providers/openai",
            Some(json!({"colour": "red"})),
        )
        .await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("colour"));
    // Deleting a credential stops its use; the OpenAPI document is served.
    let id = s.connect("openai", "sk-del", &[]).await;
    let (st, _) = s
        .admin(Method::DELETE, &format!("credentials/{id}"), None)
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .admin(Method::GET, &format!("credentials/{id}"), None)
        .await;
    assert_eq!(st, 404);
    let r = s
        .http
        .get(format!("{}/api/v1/openapi.json", s.admin_url))
        .send()
        .await
        .unwrap();
    let doc: Value = r.json().await.unwrap();
    assert!(doc["paths"]["/api/v1/keys/{id}/revoke"].is_object());
    // Every admin change is audited with the admin as actor (written in batches, so poll).
    let mut found = false;
    for _ in 0..40 {
        let (_, v) = s.admin(Method::GET, "audit", None).await;
        found = v["events"].as_array().unwrap().iter().any(|e| {
            e["action"] == "credential.delete"
                && e["target"] == id.as_str()
                && e["actor"].as_str().unwrap().starts_with("admin:adm_")
        });
        if found {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(found, "credential.delete was not audited");
}

#[tokio::test]
async fn restart_keeps_data_and_a_wrong_root_key_is_a_clear_startup_error() {
    let mock = Mock::start().await;
    let mut s = Server::start().await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", "sk-persist", &[]).await;
    let (_, key) = s.key(json!({"name": "a", "providers": ["openai"]})).await;
    assert!(s.stop().success());
    let first_token = s.token.clone();

    // Same data dir: same key works, no new bootstrap token.
    s.spawn(&[]).await;
    let r = s
        .http
        .get(format!("{}/proxy/openai/v1/models", s.gateway))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mock.last().headers["authorization"], "Bearer sk-persist");
    assert_eq!(
        std::fs::read_to_string(s.data_dir.join("admin-token"))
            .unwrap()
            .trim(),
        first_token
    );
    assert!(s.stop().success());

    // A different root key must not start and must say why.
    s.env.push((
        "LATCHKEY_ROOT_KEY".into(),
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into(),
    ));
    let mut child = s.try_spawn(&[]);
    let st = child.wait().unwrap();
    assert!(!st.success());
    assert!(
        s.stderr().contains("root key does not match"),
        "{}",
        s.stderr()
    );
    s.env.pop();
    s.env.push(("LATCHKEY_ROOT_KEY".into(), "short".into()));
    let st = s.try_spawn(&[]).wait().unwrap();
    assert!(!st.success());
    assert!(s
        .stderr()
        .contains("LATCHKEY_ROOT_KEY must be base64 of exactly 32 bytes"));
}

#[tokio::test]
async fn bad_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("latchkey.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:0\"\nalow_private_upstreams = true\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--config", cfg.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("alow_private_upstreams"), "{err}");
    std::fs::write(&cfg, "threads = \"many\"\n").unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("threads"));
}
