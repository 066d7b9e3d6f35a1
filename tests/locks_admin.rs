//! End-to-end: the control plane of proxy-key locks — key lock fields through the admin API and
//! the CLI, signing secrets shown once, suspend / reinstate, lockdown, incidents, and the audit
//! entries of each. Enforcement by the gateway is tested elsewhere.

mod common;

use common::{all_file_bytes, contains, Server};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fails(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "command should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_out(out: &std::process::Output) -> Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn login(s: &Server) {
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
}

/// Asserts a 400 `invalid_request` whose message starts with `field`.
fn invalid(st: u16, v: &Value, field: &str) {
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_request", "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.starts_with(field), "message should name {field:?}: {m}");
}

/// Polls the audit log until every `(action, target)` is present; returns the events.
async fn audited(s: &Server, wanted: &[(&str, &str)]) -> Vec<Value> {
    let mut events = Vec::new();
    for _ in 0..60 {
        let (_, v) = s.admin(Method::GET, "audit?limit=1000", None).await;
        events = v["events"].as_array().cloned().unwrap_or_default();
        let all = wanted.iter().all(|(action, target)| {
            events.iter().any(|e| {
                e["action"] == *action
                    && e["target"] == *target
                    && e["actor"].as_str().unwrap_or("").starts_with("admin:adm_")
            })
        });
        if all {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let have: Vec<String> = events
        .iter()
        .map(|e| format!("{} {}", e["action"], e["target"]))
        .collect();
    panic!("not audited: {wanted:?}; have {have:?}");
}

#[tokio::test]
async fn admin_api_sets_each_lock_and_names_the_bad_field() {
    let s = Server::start().await;

    // IP auto-bind.
    let (st, k) = s
        .admin(
            Method::POST,
            "keys",
            Some(json!({"name": "auto", "providers": ["openai"], "ip": "auto"})),
        )
        .await;
    assert_eq!(st, 201, "{k}");
    assert_eq!(
        k["locks"]["ip"],
        json!({"mode": "auto_bind", "value": {"bound": null}})
    );
    assert_eq!(k["bound_ip"], Value::Null);
    assert_eq!(k["status"], "active");
    assert_eq!(k["signed"], false);
    assert!(k.get("signing_secret").is_none());

    // CIDR list, geo, device, velocity, models and expiry in one key.
    let expires = "2999-01-01T00:00:00Z";
    let (st, k) = s
        .admin(
            Method::POST,
            "keys",
            Some(json!({
                "name": "locked", "providers": ["openai"],
                "ip": "10.0.0.0/8, 2001:db8::/32, 192.0.2.1",
                "countries": ["de", "FR"], "cities": ["Berlin"],
                "device_fingerprint": "fp-admin-7c1e",
                "velocity": {"window_secs": 30, "max_requests": 100, "max_distinct_ips": 3},
                "models": ["gpt-4o-mini"], "expires_at": expires,
            })),
        )
        .await;
    assert_eq!(st, 201, "{k}");
    let id = k["id"].as_str().unwrap().to_string();
    assert_eq!(
        k["locks"]["ip"],
        json!({"mode": "cidrs", "value": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1/32"]})
    );
    assert_eq!(
        k["locks"]["geo"],
        json!({"countries": ["DE", "FR"], "cities": ["Berlin"]})
    );
    let hash = k["locks"]["device_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!k.to_string().contains("fp-admin-7c1e"));
    assert_eq!(
        k["locks"]["velocity"],
        json!({"window_secs": 30, "max_requests": 100, "max_tokens": null, "max_distinct_ips": 3})
    );
    assert_eq!(k["models"], json!(["gpt-4o-mini"]));
    assert!(k["expires_at"].is_string());
    // GET and list show the same locks.
    let (_, got) = s.admin(Method::GET, &format!("keys/{id}"), None).await;
    assert_eq!(got["locks"], k["locks"]);
    let (_, list) = s.admin(Method::GET, "keys", None).await;
    let listed = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .unwrap();
    assert_eq!(listed["locks"], k["locks"]);

    // PATCH clears each lock.
    let (st, k) = s
        .admin(
            Method::PATCH,
            &format!("keys/{id}"),
            Some(json!({"ip": "none", "countries": [], "cities": [], "clear_device": true, "velocity": null})),
        )
        .await;
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["locks"]["ip"], json!({"mode": "none"}));
    assert_eq!(k["locks"]["geo"], json!({"countries": [], "cities": []}));
    assert_eq!(k["locks"]["device_hash"], Value::Null);
    assert_eq!(k["locks"]["velocity"], Value::Null);
    // …and sets them again one by one.
    let (st, k) = s
        .admin(
            Method::PATCH,
            &format!("keys/{id}"),
            Some(json!({"countries": ["us"], "device_fingerprint": "fp-2"})),
        )
        .await;
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["locks"]["geo"]["countries"], json!(["US"]));
    assert!(k["locks"]["device_hash"].is_string());

    // Validation errors are 400 invalid_request naming the field.
    let bad = |body: Value| {
        let mut b = json!({"name": "bad", "providers": ["openai"]});
        for (k, v) in body.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, field) in [
        (json!({"ip": "10.0.0.0/33"}), "ip"),
        (json!({"ip": "10.0.0.1,,"}), "ip"),
        (json!({"ip": "everywhere"}), "ip"),
        (json!({"countries": ["Germany"]}), "countries"),
        (json!({"velocity": {}}), "velocity"),
        (
            json!({"velocity": {"max_requests": 0}}),
            "velocity.max_requests",
        ),
        (
            json!({"velocity": {"max_tokens": 5, "window_secs": 0}}),
            "velocity.window_secs",
        ),
        (json!({"device_fingerprint": "  "}), "device_fingerprint"),
        (json!({"models": [""]}), "models"),
    ] {
        let (st, v) = s.admin(Method::POST, "keys", Some(bad(body.clone()))).await;
        invalid(st, &v, field);
    }
    let (st, v) = s
        .admin(
            Method::PATCH,
            &format!("keys/{id}"),
            Some(json!({"ip": "300.1.1.1"})),
        )
        .await;
    invalid(st, &v, "ip");
    let (st, v) = s
        .admin(
            Method::PATCH,
            &format!("keys/{id}"),
            Some(json!({"device_fingerprint": "x", "clear_device": true})),
        )
        .await;
    invalid(st, &v, "device_fingerprint");
    // Unknown fields and wrong types name the field too (the JSON parser's message).
    let (st, v) = s
        .admin(
            Method::PATCH,
            &format!("keys/{id}"),
            Some(json!({"ip_lock": "auto"})),
        )
        .await;
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("ip_lock"),
        "{v}"
    );
    let (st, v) = s
        .admin(
            Method::POST,
            "keys",
            Some(bad(json!({"velocity": {"max_requests": "lots"}}))),
        )
        .await;
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("velocity"),
        "{v}"
    );
    // A failed PATCH changed nothing.
    let (_, after) = s.admin(Method::GET, &format!("keys/{id}"), None).await;
    assert_eq!(after["locks"], k["locks"]);

    // The raw fingerprint is stored nowhere.
    for (path, bytes) in all_file_bytes(&s.data_dir) {
        assert!(!contains(&bytes, b"fp-admin-7c1e"), "{}", path.display());
    }
    audited(&s, &[("key.create", &id), ("key.update", &id)]).await;
}

#[tokio::test]
async fn signing_secret_is_shown_once_and_stored_only_sealed() {
    let s = Server::start().await;
    let (st, k) = s
        .admin(
            Method::POST,
            "keys",
            Some(json!({"name": "signed", "providers": ["openai"], "signed": true})),
        )
        .await;
    assert_eq!(st, 201, "{k}");
    let id = k["id"].as_str().unwrap().to_string();
    let secret = k["signing_secret"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("lksig_") && secret.len() == 6 + 64,
        "{secret}"
    );
    assert_eq!(k["signed"], true);
    assert_eq!(k["locks"]["signed"], true);

    // Never again: GET, list, PATCH responses.
    let (_, got) = s.admin(Method::GET, &format!("keys/{id}"), None).await;
    assert_eq!(got["signed"], true);
    assert!(got.get("signing_secret").is_none() && got.get("signing").is_none());
    assert!(!got.to_string().contains(&secret));
    let (_, list) = s.admin(Method::GET, "keys", None).await;
    assert!(!list.to_string().contains(&secret));
    assert!(!list.to_string().contains("signing_secret"));
    let (_, patched) = s
        .admin(
            Method::PATCH,
            &format!("keys/{id}"),
            Some(json!({"name": "still-signed"})),
        )
        .await;
    assert_eq!(patched["signed"], true);
    assert!(patched.get("signing_secret").is_none());

    // The store holds it sealed in its own columns; its bytes appear in no file.
    let db = rusqlite::Connection::open(s.db_path()).unwrap();
    let sealed_len: i64 = db
        .query_row(
            "SELECT length(signing_ciphertext) FROM keys WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(sealed_len > 0);
    let body: String = db
        .query_row("SELECT body FROM keys WHERE id = ?1", [&id], |r| r.get(0))
        .unwrap();
    assert!(!body.contains("lksig_"), "{body}");

    // signed: true again rotates (a new secret, shown once); false removes it.
    let (st, rotated) = s
        .admin(
            Method::PATCH,
            &format!("keys/{id}"),
            Some(json!({"signed": true})),
        )
        .await;
    assert_eq!(st, 200);
    let secret2 = rotated["signing_secret"].as_str().unwrap().to_string();
    assert_ne!(secret2, secret);

    // Through the CLI: printed once with a clear line, never by `keys list`.
    login(&s);
    let out = ok(&s.cli(
        &[
            "keys",
            "create",
            "--name",
            "cli-signed",
            "--provider",
            "openai",
            "--signed",
        ],
        None,
    ));
    assert!(out.contains("shown once"), "{out}");
    let cli_secret = out
        .lines()
        .find(|l| l.starts_with("lksig_"))
        .unwrap_or_else(|| panic!("no secret line: {out}"))
        .trim()
        .to_string();
    for args in [vec!["keys", "list"], vec!["--json", "keys", "list"]] {
        let listed = ok(&s.cli(&args, None));
        assert!(!listed.contains(&cli_secret), "{listed}");
        assert!(!listed.contains("lksig_"), "{listed}");
    }
    let listed = json_out(&s.cli(&["--json", "keys", "list"], None));
    let cli_key = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "cli-signed")
        .unwrap()
        .clone();
    assert_eq!(cli_key["signed"], true);
    let out = ok(&s.cli(
        &[
            "keys",
            "update",
            cli_key["id"].as_str().unwrap(),
            "--no-signed",
        ],
        None,
    ));
    assert!(out.contains("Updated"), "{out}");

    let (_, off) = s
        .admin(
            Method::PATCH,
            &format!("keys/{id}"),
            Some(json!({"signed": false})),
        )
        .await;
    assert_eq!(off["signed"], false);
    assert_eq!(off["locks"]["signed"], false);
    assert!(off.get("signing_secret").is_none());
    let cleared: Option<Vec<u8>> = db
        .query_row(
            "SELECT signing_ciphertext FROM keys WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(cleared.is_none());

    // Not in the database file, its WAL, the CLI state or the server logs.
    for (path, bytes) in all_file_bytes(s.dir.path()) {
        for sec in [&secret, &secret2, &cli_secret] {
            assert!(
                !contains(&bytes, sec.as_bytes()),
                "signing secret found in {}",
                path.display()
            );
        }
    }
    // Audit events say what changed, never the secret.
    let events = audited(&s, &[("key.create", &id), ("key.update", &id)]).await;
    let text = Value::Array(events).to_string();
    assert!(!text.contains(&secret) && !text.contains(&secret2));
}

#[tokio::test]
async fn lock_unbind_device_suspend_reinstate_are_audited() {
    let s = Server::start().await;
    let (id, _) = s
        .key(json!({"name": "k", "providers": ["openai"], "ip": "10.0.0.0/8"}))
        .await;

    // Explicit lock: auto-bind mode with the given address bound.
    let (st, k) = s
        .admin(
            Method::POST,
            &format!("keys/{id}/lock"),
            Some(json!({"ip": "203.0.113.7"})),
        )
        .await;
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["bound_ip"], "203.0.113.7");
    assert_eq!(k["locks"]["ip"]["mode"], "auto_bind");
    let (st, v) = s
        .admin(
            Method::POST,
            &format!("keys/{id}/lock"),
            Some(json!({"ip": "203.0.113.0/24"})),
        )
        .await;
    invalid(st, &v, "ip");
    let (st, _) = s
        .admin(
            Method::POST,
            "keys/key_nope/lock",
            Some(json!({"ip": "203.0.113.7"})),
        )
        .await;
    assert_eq!(st, 404);
    // A PATCH that does not touch the IP lock keeps the binding.
    let (_, k) = s
        .admin(
            Method::PATCH,
            &format!("keys/{id}"),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(k["bound_ip"], "203.0.113.7");
    // Unbind: the next request re-binds.
    let (st, k) = s
        .admin(Method::POST, &format!("keys/{id}/unbind"), None)
        .await;
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["bound_ip"], Value::Null);
    assert_eq!(k["locks"]["ip"]["mode"], "auto_bind");

    // Device binding stores only a hash.
    let (st, k) = s
        .admin(
            Method::POST,
            &format!("keys/{id}/bind-device"),
            Some(json!({"fingerprint": "fp-unique-93f2"})),
        )
        .await;
    assert_eq!(st, 200, "{k}");
    assert!(k["locks"]["device_hash"].is_string());
    let (st, v) = s
        .admin(
            Method::POST,
            &format!("keys/{id}/bind-device"),
            Some(json!({"fingerprint": ""})),
        )
        .await;
    invalid(st, &v, "fingerprint");

    // Manual suspend (with and without a body), then reinstate.
    let (st, k) = s
        .admin(
            Method::POST,
            &format!("keys/{id}/suspend"),
            Some(json!({"reason": "investigating"})),
        )
        .await;
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["status"], "suspended");
    assert_eq!(k["suspended_reason"], "investigating");
    let (_, status) = s.admin(Method::GET, "status", None).await;
    assert_eq!(status["keys"]["suspended"], 1);
    // Config changes keep a key suspended.
    let (_, k) = s
        .admin(
            Method::PATCH,
            &format!("keys/{id}"),
            Some(json!({"models": ["gpt-4o"]})),
        )
        .await;
    assert_eq!(k["status"], "suspended");
    let (st, k) = s
        .admin(Method::POST, &format!("keys/{id}/suspend"), None)
        .await;
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["suspended_reason"], "suspended by an admin");
    let (st, k) = s
        .admin(Method::POST, &format!("keys/{id}/reinstate"), None)
        .await;
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["status"], "active");
    assert_eq!(k["suspended_reason"], Value::Null);

    // A revoked key stays revoked.
    let (st, _) = s
        .admin(Method::POST, &format!("keys/{id}/revoke"), None)
        .await;
    assert_eq!(st, 200);
    for action in ["reinstate", "suspend", "unbind"] {
        let (st, v) = s
            .admin(Method::POST, &format!("keys/{id}/{action}"), None)
            .await;
        assert_eq!(st, 409, "{action}: {v}");
    }
    let (st, _) = s
        .admin(
            Method::POST,
            &format!("keys/{id}/lock"),
            Some(json!({"ip": "192.0.2.1"})),
        )
        .await;
    assert_eq!(st, 409);
    let (_, k) = s.admin(Method::GET, &format!("keys/{id}"), None).await;
    assert_eq!(k["status"], "revoked");

    let events = audited(
        &s,
        &[
            ("key.lock", &id),
            ("key.unbind", &id),
            ("key.bind_device", &id),
            ("key.suspend", &id),
            ("key.reinstate", &id),
            ("key.revoke", &id),
        ],
    )
    .await;
    let suspend = events
        .iter()
        .find(|e| {
            e["action"] == "key.suspend"
                && e["detail"].as_str().unwrap_or("").contains("investigating")
        })
        .expect("suspend reason in the audit detail");
    assert_eq!(suspend["decision"], "ok");
    let lock = events.iter().find(|e| e["action"] == "key.lock").unwrap();
    assert!(lock["detail"].as_str().unwrap().contains("203.0.113.7"));
    assert!(!Value::Array(events).to_string().contains("fp-unique-93f2"));
    let (_, verify) = s.admin(Method::GET, "audit/verify", None).await;
    assert_eq!(verify["ok"], true, "{verify}");
}

#[tokio::test]
async fn cli_sets_locks_binds_a_device_and_prints_it_in_env() {
    let s = Server::start().await;
    login(&s);
    let k = json_out(&s.cli(
        &[
            "--json",
            "keys",
            "create",
            "--name",
            "agent",
            "--provider",
            "openai",
            "--ip",
            "auto",
            "--country",
            "de,fr",
            "--city",
            "Berlin",
            "--city",
            "Paris",
            "--velocity-requests",
            "50",
            "--velocity-window",
            "30",
            "--models",
            "gpt-4o-mini",
            "--expires",
            "30d",
        ],
        None,
    ));
    let id = k["id"].as_str().unwrap().to_string();
    assert!(k["key"].as_str().unwrap().starts_with("lk_"));
    assert_eq!(k["locks"]["ip"]["mode"], "auto_bind");
    assert_eq!(k["locks"]["geo"]["countries"], json!(["DE", "FR"]));
    assert_eq!(k["locks"]["geo"]["cities"], json!(["Berlin", "Paris"]));
    assert_eq!(k["locks"]["velocity"]["max_requests"], 50);
    assert_eq!(k["locks"]["velocity"]["window_secs"], 30);
    assert!(k["expires_at"].is_string());
    let k2 = json_out(&s.cli(
        &[
            "--json",
            "keys",
            "create",
            "--name",
            "cidr",
            "--provider",
            "openai",
            "--ip",
            "10.0.0.0/8,2001:db8::/32",
            "--expires",
            "2999-01-01T00:00:00Z",
        ],
        None,
    ));
    assert_eq!(
        k2["locks"]["ip"]["value"],
        json!(["10.0.0.0/8", "2001:db8::/32"])
    );
    assert!(k2["expires_at"].as_str().unwrap().starts_with("2999-01-01"));

    // Text output summarises the locks.
    let list = ok(&s.cli(&["keys", "list"], None));
    assert!(list.contains("LOCKS"), "{list}");
    assert!(list.contains("ip=auto(unbound)"), "{list}");
    assert!(list.contains("country=DE,FR"), "{list}");

    // Bad values name the field, from the server's validation.
    let err = fails(&s.cli(
        &[
            "keys",
            "create",
            "--name",
            "x",
            "--provider",
            "openai",
            "--ip",
            "10.0.0.0/33",
        ],
        None,
    ));
    assert!(
        err.contains("ip:") && err.contains("invalid_request"),
        "{err}"
    );
    let err = fails(&s.cli(
        &[
            "keys",
            "create",
            "--name",
            "x",
            "--provider",
            "openai",
            "--country",
            "Germany",
        ],
        None,
    ));
    assert!(err.contains("countries:"), "{err}");
    let err = fails(&s.cli(
        &[
            "keys",
            "create",
            "--name",
            "x",
            "--provider",
            "openai",
            "--expires",
            "soon",
        ],
        None,
    ));
    assert!(err.contains("--expires"), "{err}");

    // update: clear and set locks.
    let v = json_out(&s.cli(
        &[
            "--json",
            "keys",
            "update",
            &id,
            "--ip",
            "none",
            "--no-geo",
            "--no-velocity",
        ],
        None,
    ));
    assert_eq!(v["locks"]["ip"]["mode"], "none");
    assert_eq!(v["locks"]["geo"]["countries"], json!([]));
    assert_eq!(v["locks"]["velocity"], Value::Null);
    let v = json_out(&s.cli(
        &[
            "--json",
            "keys",
            "update",
            &id,
            "--velocity-ips",
            "4",
            "--city",
            "Lyon",
        ],
        None,
    ));
    assert_eq!(v["locks"]["velocity"]["max_distinct_ips"], 4);
    assert_eq!(v["locks"]["velocity"]["window_secs"], 60);
    assert_eq!(v["locks"]["geo"]["cities"], json!(["Lyon"]));

    // lock / unbind.
    let out = ok(&s.cli(&["keys", "lock", &id, "--ip", "192.0.2.5"], None));
    assert!(out.contains("bound to 192.0.2.5"), "{out}");
    let v = json_out(&s.cli(&["--json", "keys", "unbind", &id], None));
    assert_eq!(v["bound_ip"], Value::Null);
    assert_eq!(v["locks"]["ip"]["mode"], "auto_bind");

    // bind-device with an explicit fingerprint: saved for `env`, only a hash on the server.
    let v = json_out(&s.cli(
        &[
            "--json",
            "keys",
            "bind-device",
            &id,
            "--fingerprint",
            "fp-cli-51aa",
        ],
        None,
    ));
    assert_eq!(v["saved"], true);
    assert_eq!(v["fingerprint"], "fp-cli-51aa");
    assert!(v["locks"]["device_hash"].is_string());
    let env = ok(&s.cli(&["env", "--key", &id], None));
    assert!(
        env.lines()
            .any(|l| l == "LATCHKEY_DEVICE_FINGERPRINT=fp-cli-51aa"),
        "{env}"
    );
    assert!(env.contains("x-device-fingerprint"), "{env}");
    assert!(
        env.contains("default_headers") && env.contains("defaultHeaders"),
        "{env}"
    );
    // Still a valid .env: every line is a comment or NAME=VALUE.
    for line in env.lines().filter(|l| !l.trim().is_empty()) {
        let valid = line.starts_with('#')
            || line.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            });
        assert!(valid, "not a .env line: {line:?}");
    }
    let vars = json_out(&s.cli(&["--json", "env", "--key", &id], None));
    assert_eq!(vars["LATCHKEY_DEVICE_FINGERPRINT"], "fp-cli-51aa");
    // A key without a device prints no fingerprint.
    let other = ok(&s.cli(&["env", "--key", "cidr"], None));
    assert!(!other.contains("LATCHKEY_DEVICE_FINGERPRINT"), "{other}");
    // Raw fingerprint: in the CLI state (next to the saved key), nowhere on the server.
    let state = std::fs::read_to_string(s.dir.path().join("cli.json")).unwrap();
    assert!(state.contains("fp-cli-51aa"));
    for (path, bytes) in all_file_bytes(&s.data_dir) {
        assert!(!contains(&bytes, b"fp-cli-51aa"), "{}", path.display());
    }

    // Without --fingerprint the CLI computes one for this machine.
    if std::path::Path::new("/etc/machine-id").exists()
        || std::path::Path::new("/var/lib/dbus/machine-id").exists()
    {
        let v = json_out(&s.cli(&["--json", "keys", "bind-device", &id], None));
        let fp = v["fingerprint"].as_str().unwrap();
        assert_eq!(fp.len(), 64);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        let again = json_out(&s.cli(&["--json", "keys", "bind-device", &id], None));
        assert_eq!(again["fingerprint"], fp, "the fingerprint is stable");
    }
    let v = json_out(&s.cli(&["--json", "keys", "update", &id, "--clear-device"], None));
    assert_eq!(v["locks"]["device_hash"], Value::Null);
    let env = ok(&s.cli(&["env", "--key", &id], None));
    assert!(!env.contains("LATCHKEY_DEVICE_FINGERPRINT"), "{env}");

    // suspend / reinstate.
    let out = ok(&s.cli(&["keys", "suspend", &id, "--reason", "drill"], None));
    assert!(out.contains("Suspended"), "{out}");
    let list = json_out(&s.cli(&["--json", "keys", "list"], None));
    let k = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert_eq!(k["status"], "suspended");
    assert_eq!(k["suspended_reason"], "drill");
    let v = json_out(&s.cli(&["--json", "keys", "reinstate", &id], None));
    assert_eq!(v["status"], "active");

    audited(
        &s,
        &[
            ("key.create", &id),
            ("key.update", &id),
            ("key.lock", &id),
            ("key.unbind", &id),
            ("key.bind_device", &id),
            ("key.suspend", &id),
            ("key.reinstate", &id),
        ],
    )
    .await;
}

#[tokio::test]
async fn lockdown_on_off_status_via_cli_and_api() {
    let s = Server::start().await;
    login(&s);
    let v = json_out(&s.cli(&["--json", "lockdown", "status"], None));
    assert_eq!(v["active"], false);
    assert_eq!(v["lockdowns"], json!([]));
    assert!(ok(&s.cli(&["lockdown", "status"], None)).contains("No lockdown in force"));

    // Tenant (default scope), provider, global.
    let v = json_out(&s.cli(&["--json", "lockdown", "on", "--reason", "drill"], None));
    assert_eq!(v["active"], true);
    assert_eq!(v["lockdown"]["scope"], "tenant");
    assert_eq!(v["lockdown"]["tenant"], "default");
    assert_eq!(v["lockdown"]["reason"], "drill");
    assert!(v["lockdown"]["created_by"]
        .as_str()
        .unwrap()
        .starts_with("admin:adm_"));
    let v = json_out(&s.cli(&["--json", "lockdown", "on", "--provider", "openai"], None));
    assert_eq!(v["lockdown"]["scope"], "provider");
    assert_eq!(v["lockdown"]["provider"], "openai");
    let v = json_out(&s.cli(&["--json", "lockdown", "on", "--global"], None));
    assert_eq!(v["lockdown"]["scope"], "global");
    assert_eq!(v["lockdown"]["tenant"], "*");
    // Idempotent.
    let v = json_out(&s.cli(
        &["--json", "lockdown", "on", "--global", "--reason", "again"],
        None,
    ));
    assert_eq!(v["lockdowns"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["lockdown"]["reason"], "again");
    let text = ok(&s.cli(&["lockdown", "status"], None));
    assert!(text.contains("LOCKDOWN IN FORCE"), "{text}");
    assert!(text.contains("openai"), "{text}");
    let (_, st) = s.admin(Method::GET, "status", None).await;
    assert_eq!(st["lockdown"]["active"], true);
    assert_eq!(st["lockdown"]["switches"], 3);

    // Bad input.
    let err = fails(&s.cli(&["lockdown", "on", "--provider", "nosuch"], None));
    assert!(
        err.contains("provider:") && err.contains("unknown provider"),
        "{err}"
    );
    let (st, v) = s
        .admin(Method::POST, "lockdown", Some(json!({"scope": "planet"})))
        .await;
    invalid(st, &v, "scope");
    let (st, v) = s
        .admin(Method::POST, "lockdown", Some(json!({"scope": "provider"})))
        .await;
    invalid(st, &v, "provider");
    let (st, v) = s
        .admin(
            Method::POST,
            "lockdown",
            Some(json!({"scope": "tenant", "provider": "openai"})),
        )
        .await;
    invalid(st, &v, "provider");

    // Lifting removes exactly the named switch.
    let v = json_out(&s.cli(&["--json", "lockdown", "off", "--provider", "openai"], None));
    assert_eq!(v["lifted"], true);
    assert_eq!(v["lockdowns"].as_array().unwrap().len(), 2);
    let v = json_out(&s.cli(&["--json", "lockdown", "off", "--provider", "openai"], None));
    assert_eq!(v["lifted"], false);
    let out = ok(&s.cli(&["lockdown", "off", "--global"], None));
    assert!(out.contains("Lockdown lifted"), "{out}");
    // The API form of lift, same body as turning it on.
    let (st, v) = s
        .admin(
            Method::POST,
            "lockdown/lift",
            Some(json!({"scope": "tenant"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["lifted"], true);
    assert_eq!(v["active"], false);
    let v = json_out(&s.cli(&["--json", "lockdown", "status"], None));
    assert_eq!(v["active"], false);

    let events = audited(
        &s,
        &[
            ("lockdown.on", "tenant:default"),
            ("lockdown.on", "default/openai"),
            ("lockdown.on", "global"),
            ("lockdown.off", "default/openai"),
            ("lockdown.off", "global"),
            ("lockdown.off", "tenant:default"),
        ],
    )
    .await;
    assert!(events
        .iter()
        .any(|e| e["action"] == "lockdown.on"
            && e["detail"].as_str().unwrap_or("").contains("drill")));
    assert!(events
        .iter()
        .any(|e| e["action"] == "lockdown.off" && e["decision"] == "noop"));
}

#[tokio::test]
async fn incidents_list_and_resolve() {
    let s = Server::start().await;
    login(&s);
    let v = json_out(&s.cli(&["--json", "incidents", "list"], None));
    assert_eq!(v["incidents"], json!([]));
    assert!(ok(&s.cli(&["incidents", "list"], None)).contains("No incidents"));
    // Incidents are recorded by the gateway on a velocity spike; write one the way it does.
    let (id, _) = s.key(json!({"name": "k", "providers": ["openai"]})).await;
    {
        let db = rusqlite::Connection::open(s.db_path()).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        db.execute(
            "INSERT INTO incidents (id, tenant, key_id, kind, detail, created_at) VALUES ('inc_test1', 'default', ?1, 'velocity', '{\"kind\":\"requests\",\"observed\":11,\"limit\":10}', '2025-01-01T00:00:00.000Z')",
            [&id],
        )
        .unwrap();
    }
    let v = json_out(&s.cli(&["--json", "incidents", "list"], None));
    let inc = &v["incidents"][0];
    assert_eq!(inc["id"], "inc_test1");
    assert_eq!(inc["key_id"], id.as_str());
    assert_eq!(inc["kind"], "velocity");
    assert_eq!(inc["detail"]["observed"], 11);
    assert_eq!(inc["resolved"], false);
    let text = ok(&s.cli(&["incidents", "list"], None));
    assert!(
        text.contains("inc_test1") && text.contains("open"),
        "{text}"
    );
    let (st, v) = s
        .admin(Method::POST, "incidents/inc_test1/resolve", None)
        .await;
    assert_eq!(st, 200, "{v}");
    let v = json_out(&s.cli(&["--json", "incidents", "list", "--limit", "5"], None));
    assert_eq!(v["incidents"][0]["resolved"], true);
    assert!(v["incidents"][0]["resolved_at"].is_string());
    let err = fails(&s.cli(&["incidents", "resolve", "inc_nope"], None));
    assert!(err.contains("not_found"), "{err}");
    audited(&s, &[("incident.resolve", "inc_test1")]).await;
}

#[tokio::test]
async fn openapi_documents_the_lock_endpoints() {
    let s = Server::start().await;
    let doc: Value = s
        .http
        .get(format!("{}/api/v1/openapi.json", s.admin_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/keys/{id}/lock",
        "/api/v1/keys/{id}/unbind",
        "/api/v1/keys/{id}/bind-device",
        "/api/v1/keys/{id}/suspend",
        "/api/v1/keys/{id}/reinstate",
        "/api/v1/lockdown",
        "/api/v1/lockdown/lift",
        "/api/v1/incidents",
        "/api/v1/incidents/{id}/resolve",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let schemas = &doc["components"]["schemas"];
    for field in [
        "ip",
        "countries",
        "cities",
        "device_fingerprint",
        "signed",
        "velocity",
    ] {
        assert!(
            schemas["NewKey"]["properties"][field].is_object(),
            "NewKey.{field}"
        );
        assert!(
            schemas["KeyPatch"]["properties"][field].is_object(),
            "KeyPatch.{field}"
        );
    }
    for field in ["locks", "bound_ip", "signed", "suspended_reason"] {
        assert!(
            schemas["Key"]["properties"][field].is_object(),
            "Key.{field}"
        );
    }
    assert!(
        schemas["KeyCreated"]["properties"]["signing_secret"].is_object()
            || schemas["Key"]["properties"]["signing_secret"].is_object()
    );
}
