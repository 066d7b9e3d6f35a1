//! What each client command does.

use super::client::Admin;
use super::governance::{self, limits_text, merge_limits};
use super::state::{CliState, SavedKey};
use super::{
    AuditCommand, Cli, Command, IncidentsCommand, KeysCommand, LockArgs, LockdownCommand,
    PolicyCommand,
};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::io::{IsTerminal, Read};
use zeroize::Zeroizing;

/// Dispatches a client command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let json_out = cli.json;
    let mut state = CliState::load()?;
    match cli.command {
        Command::Serve(_) => bail!("serve is handled by the binary"),
        Command::Login {
            url,
            token,
            token_file,
        } => login(&mut state, json_out, url, token, token_file),
        Command::Logout => {
            let removed = CliState::remove()?;
            emit(json_out, json!({ "logged_out": removed }), || {
                if removed {
                    "Logged out.".into()
                } else {
                    "Not logged in.".into()
                }
            })
        }
        Command::Status => {
            let v = Admin::from_env_or_login(&state)?.get("status")?;
            emit(json_out, v.clone(), || status_text(&v))
        }
        Command::Providers => {
            let v = Admin::from_env_or_login(&state)?.get("providers")?;
            emit(json_out, v.clone(), || providers_text(&v))
        }
        Command::Connect {
            provider,
            label,
            workloads,
        } => connect(&state, json_out, provider, label, workloads),
        Command::Keys(k) => keys(&mut state, json_out, k),
        Command::Env { key, provider } => env(&state, json_out, key, provider),
        Command::Audit(AuditCommand::Verify) => audit_verify(&state, json_out),
        Command::Audit(AuditCommand::List { limit }) => {
            let v = Admin::from_env_or_login(&state)?.get(&format!("audit?limit={limit}"))?;
            emit(json_out, v.clone(), || audit_text(&v))
        }
        Command::Lockdown(l) => lockdown(&state, json_out, l),
        Command::Incidents(i) => incidents(&state, json_out, i),
        Command::Policy(PolicyCommand::Test { policy, request }) => {
            policy_test(json_out, &policy, &request)
        }
        Command::Policy(PolicyCommand::Apply {
            file,
            key,
            tenant_default,
        }) => governance::policy_apply(&state, json_out, &file, key, tenant_default),
        Command::Policy(PolicyCommand::Get { name, key }) => {
            governance::policy_get(&state, json_out, name, key)
        }
        Command::Policy(PolicyCommand::Detach {
            key,
            tenant_default,
        }) => governance::policy_detach(&state, json_out, key, tenant_default),
        Command::Policy(PolicyCommand::Delete { name }) => {
            governance::policy_delete(&state, json_out, &name)
        }
        Command::Holds(h) => governance::holds(&state, json_out, h),
        Command::Limits(l) => governance::limits(&state, json_out, l),
        Command::Models(m) => governance::models(&state, json_out, m),
    }
}

/// `latchkey policy test POLICY REQUEST`: compiles the policy and evaluates the sample, offline.
fn policy_test(
    json_out: bool,
    policy: &std::path::Path,
    request: &std::path::Path,
) -> anyhow::Result<()> {
    use latchkey_policy::rules::{Policy, SampleRequest};
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let compiled = Policy::from_toml(&read(policy)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", policy.display()))?;
    let sample = SampleRequest::parse(&read(request)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", request.display()))?;
    let decision = sample.evaluate(&compiled);
    let v = serde_json::json!({
        "policy": compiled.name(),
        "mode": format!("{:?}", compiled.mode()).to_lowercase(),
        "decision": decision,
        "enforced_action": decision.enforced_action().to_string(),
        "summary": decision.to_string(),
    });
    emit(json_out, v, || format!("{decision}"))
}

/// Prints JSON or the text rendering.
pub(super) fn emit(json_out: bool, v: Value, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let t = text();
        if !t.is_empty() {
            println!("{}", t.trim_end());
        }
    }
    Ok(())
}

pub(super) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Renders rows as an aligned table.
pub(super) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:w$}", c, w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

fn login(
    state: &mut CliState,
    json_out: bool,
    url: String,
    token: Option<String>,
    token_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let token = Zeroizing::new(match (token, token_file) {
        (Some(t), _) => t,
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("cannot read token file {}", f.display()))?,
        (None, None) => bail!("give --token-file FILE (or --token TOKEN)"),
    });
    let token = token.trim().to_string();
    let admin = Admin::new(&url, &token)?;
    let status = admin.get("status").context("login failed")?;
    state.url = Some(url.trim_end_matches('/').to_string());
    state.token = Some(token);
    state.save()?;
    emit(
        json_out,
        json!({ "logged_in": true, "url": state.url, "status": status }),
        || {
            format!(
                "Logged in to {} (gateway {}).",
                url,
                s(&status["gateway_url"])
            )
        },
    )
}

fn status_text(v: &Value) -> String {
    let mut out = format!(
        "version:      {}\nuptime:       {}s\ngateway:      {}\nstore:        {} ({})\ncredentials:  {}\nkeys:         {} active of {}",
        s(&v["version"]),
        s(&v["uptime_seconds"]),
        s(&v["gateway_url"]),
        s(&v["store"]["kind"]),
        if v["store"]["ok"] == json!(true) { "ok" } else { "UNREACHABLE" },
        s(&v["credentials"]),
        s(&v["keys"]["active"]),
        s(&v["keys"]["total"]),
    );
    let circuits: Vec<String> = v["circuits"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{} {} ({} of {} failed)",
                        s(&c["target"]),
                        s(&c["state"]),
                        s(&c["failures"]),
                        s(&c["requests"])
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if !circuits.is_empty() {
        out.push_str(&format!("\ncircuits:     {}", circuits.join("; ")));
    }
    out
}

fn providers_text(v: &Value) -> String {
    let yes = |b: &Value| if b == &json!(true) { "yes" } else { "no" }.to_string();
    let rows = v["providers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let c = &p["capabilities"];
                    vec![
                        s(&p["id"]),
                        s(&p["auth"]),
                        yes(&c["vaulting"]),
                        yes(&c["proxying"]),
                        s(&c["rotation"]),
                        yes(&c["idempotency"]),
                        s(&c["rate_limit_headers"]),
                        yes(&c["openai_compatible"]),
                        s(&p["credentials"]),
                        s(&p["base_url"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "PROVIDER",
            "AUTH",
            "VAULT",
            "PROXY",
            "ROTATION",
            "IDEMPOTENCY",
            "RATELIMIT",
            "/V1",
            "CREDS",
            "BASE URL",
        ],
        rows,
    )
}

fn read_secret(provider: &str) -> anyhow::Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let raw = if stdin.is_terminal() {
        Zeroizing::new(rpassword::prompt_password(format!(
            "Secret for {provider} (input hidden): "
        ))?)
    } else {
        let mut buf = Zeroizing::new(String::new());
        stdin
            .lock()
            .read_to_string(&mut buf)
            .context("cannot read the secret from stdin")?;
        buf
    };
    let trimmed = Zeroizing::new(raw.trim().to_string());
    if trimmed.is_empty() {
        bail!("no secret given: pipe it in (echo \"$KEY\" | latchkey connect {provider}) or type it at the prompt");
    }
    Ok(trimmed)
}

fn connect(
    state: &CliState,
    json_out: bool,
    provider: String,
    label: Option<String>,
    workloads: Vec<String>,
) -> anyhow::Result<()> {
    let admin = Admin::from_env_or_login(state)?;
    let secret = read_secret(&provider)?;
    let mut body =
        json!({ "provider": provider, "value": secret.as_str(), "workloads": workloads });
    if let Some(l) = label {
        body["label"] = json!(l);
    }
    let result = admin.post("credentials", &body);
    // Wipe the request body's copy of the secret.
    if let Some(Value::String(v)) = body.get_mut("value") {
        zeroize::Zeroize::zeroize(v);
    }
    let v = result?;
    emit(json_out, v.clone(), || {
        format!(
            "Connected {}: credential {} (label {}, workloads {}). The secret is stored encrypted and can never be read back.",
            s(&v["provider"]),
            s(&v["id"]),
            s(&v["label"]),
            s(&v["workloads"])
        )
    })
}

/// Parses `30m`, `12h`, `7d`, `45s` into an RFC 3339 time from now.
fn expiry_from_duration(d: &str) -> anyhow::Result<String> {
    let (num, unit) = d.split_at(d.len().saturating_sub(1));
    let n: i64 = num
        .parse()
        .with_context(|| format!("bad duration {d:?}: use e.g. 30m, 12h, 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("bad duration {d:?}: use e.g. 30m, 12h, 7d"),
    };
    if n <= 0 {
        bail!("duration must be positive");
    }
    Ok((chrono::Utc::now() + chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `--expires`: a duration (`30d`, `12h`) from now, or an RFC 3339 time passed through.
fn expiry_flexible(e: &str) -> anyhow::Result<String> {
    let e = e.trim();
    let looks_like_duration = e.len() >= 2
        && e[..e.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && e.ends_with(['s', 'm', 'h', 'd']);
    if looks_like_duration {
        return expiry_from_duration(e);
    }
    chrono::DateTime::parse_from_rfc3339(e).with_context(|| {
        format!("bad --expires {e:?}: use a duration (30d, 12h) or an RFC 3339 time")
    })?;
    Ok(e.to_string())
}

/// Adds the lock options to a create/update body.
fn lock_body(body: &mut Value, l: LockArgs) {
    if let Some(ip) = l.ip {
        body["ip"] = json!(ip);
    }
    if let Some(c) = l.countries {
        body["countries"] = json!(c);
    }
    if let Some(c) = l.cities {
        body["cities"] = json!(c);
    }
    if l.velocity_requests.is_some()
        || l.velocity_tokens.is_some()
        || l.velocity_ips.is_some()
        || l.velocity_window.is_some()
    {
        let mut v = json!({
            "max_requests": l.velocity_requests,
            "max_tokens": l.velocity_tokens,
            "max_distinct_ips": l.velocity_ips,
        });
        if let Some(w) = l.velocity_window {
            v["window_secs"] = json!(w);
        }
        body["velocity"] = v;
    }
}

/// One line describing a key's locks: `ip=auto(203.0.113.7) country=DE device signed velocity`.
fn locks_text(k: &Value) -> String {
    let l = &k["locks"];
    let mut parts = Vec::new();
    match l["ip"]["mode"].as_str() {
        Some("auto_bind") => parts.push(format!(
            "ip=auto({})",
            k["bound_ip"].as_str().unwrap_or("unbound")
        )),
        Some("cidrs") => parts.push(format!("ip={}", s(&l["ip"]["value"]))),
        _ => {}
    }
    if l["geo"]["countries"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        parts.push(format!("country={}", s(&l["geo"]["countries"])));
    }
    if l["geo"]["cities"].as_array().is_some_and(|a| !a.is_empty()) {
        parts.push(format!("city={}", s(&l["geo"]["cities"])));
    }
    if l["device_hash"].is_string() {
        parts.push("device".into());
    }
    if k["signed"] == json!(true) {
        parts.push("signed".into());
    }
    if let Some(v) = l["velocity"].as_object() {
        let mut limits = Vec::new();
        for (name, field) in [
            ("req", "max_requests"),
            ("tok", "max_tokens"),
            ("ips", "max_distinct_ips"),
        ] {
            if let Some(n) = v.get(field).and_then(Value::as_u64) {
                limits.push(format!("{n}{name}"));
            }
        }
        parts.push(format!(
            "velocity={}/{}s",
            limits.join(","),
            s(&v.get("window_secs").cloned().unwrap_or(Value::Null))
        ));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn status_text_of(k: &Value) -> String {
    match k["suspended_reason"].as_str() {
        Some(r) if k["status"] == json!("suspended") => format!("suspended ({r})"),
        _ => s(&k["status"]),
    }
}

const SECRET_SHOWN_ONCE: &str = "Signing secret (shown once: store it now; it cannot be read back)";

fn keys_text(v: &Value) -> String {
    let rows = v["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|k| {
                    vec![
                        s(&k["id"]),
                        s(&k["name"]),
                        s(&k["prefix"]),
                        s(&k["providers"]),
                        s(&k["workload"]),
                        s(&k["status"]),
                        s(&k["expires_at"]),
                        locks_text(k),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "ID",
            "NAME",
            "KEY",
            "PROVIDERS",
            "WORKLOAD",
            "STATUS",
            "EXPIRES",
            "LOCKS",
        ],
        rows,
    )
}

fn key_text(k: &Value) -> String {
    format!(
        "{} {} ({}) providers={} workload={} status={} expires={} policy={} limits: {} locks: {}",
        s(&k["id"]),
        s(&k["name"]),
        s(&k["prefix"]),
        s(&k["providers"]),
        s(&k["workload"]),
        status_text_of(k),
        s(&k["expires_at"]),
        s(&k["policy"]),
        limits_text(&k["limits"]),
        locks_text(k)
    )
}

fn keys(state: &mut CliState, json_out: bool, cmd: KeysCommand) -> anyhow::Result<()> {
    let admin = Admin::from_env_or_login(state)?;
    match cmd {
        KeysCommand::List => {
            let v = admin.get("keys")?;
            emit(json_out, v.clone(), || keys_text(&v))
        }
        KeysCommand::Create {
            name,
            providers,
            workload,
            models,
            expires_in,
            expires_at,
            expires,
            signed,
            policy,
            locks,
            limits,
        } => {
            let mut body = json!({ "name": name, "providers": providers, "models": models });
            if let Some(p) = policy {
                body["policy"] = json!(p);
            }
            if !limits.is_empty() {
                merge_limits(&mut body["limits"], &limits);
            }
            if let Some(w) = workload {
                body["workload"] = json!(w);
            }
            let expires = match (expires_in, expires_at, expires) {
                (Some(d), _, _) => Some(expiry_from_duration(&d)?),
                (None, Some(at), _) => Some(at),
                (None, None, Some(e)) => Some(expiry_flexible(&e)?),
                (None, None, None) => None,
            };
            if let Some(e) = expires {
                body["expires_at"] = json!(e);
            }
            if signed {
                body["signed"] = json!(true);
            }
            lock_body(&mut body, locks);
            let v = admin.post("keys", &body)?;
            state.keys.push(SavedKey {
                id: s(&v["id"]),
                name: s(&v["name"]),
                providers: serde_json::from_value(v["providers"].clone()).unwrap_or_default(),
                key: s(&v["key"]),
                created_at: s(&v["created_at"]),
                device_fingerprint: None,
            });
            state.save()?;
            emit(json_out, v.clone(), || {
                let mut out = format!(
                    "{}\n\nCreated key {} ({}). This is the only time the key is shown; `latchkey env` prints it for your app.",
                    s(&v["key"]),
                    s(&v["id"]),
                    s(&v["name"])
                );
                if locks_text(&v) != "-" {
                    out.push_str(&format!("\nLocks: {}", locks_text(&v)));
                }
                if let Some(secret) = v["signing_secret"].as_str() {
                    out.push_str(&format!("\n{SECRET_SHOWN_ONCE}:\n{secret}"));
                }
                out
            })
        }
        KeysCommand::Update {
            id,
            name,
            providers,
            workload,
            no_workload,
            models,
            expires_in,
            expires_at,
            expires,
            no_expiry,
            signed,
            no_signed,
            no_geo,
            clear_device,
            no_velocity,
            policy,
            no_policy,
            no_limits,
            locks,
            limits,
        } => {
            let mut body = json!({});
            if let Some(p) = policy {
                body["policy"] = json!(p);
            }
            if no_policy {
                body["policy"] = Value::Null;
            }
            if no_limits {
                body["limits"] = Value::Null;
            }
            if !limits.is_empty() {
                // Other limits of the key are kept: start from what it has.
                let mut current = admin.get(&format!("keys/{id}"))?["limits"].clone();
                merge_limits(&mut current, &limits);
                body["limits"] = current;
            }
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(p) = providers {
                body["providers"] = json!(p);
            }
            if let Some(w) = workload {
                body["workload"] = json!(w);
            }
            if no_workload {
                body["workload"] = Value::Null;
            }
            if let Some(m) = models {
                body["models"] = json!(m);
            }
            if let Some(d) = expires_in {
                body["expires_at"] = json!(expiry_from_duration(&d)?);
            }
            if let Some(at) = expires_at {
                body["expires_at"] = json!(at);
            }
            if let Some(e) = expires {
                body["expires_at"] = json!(expiry_flexible(&e)?);
            }
            if no_expiry {
                body["expires_at"] = Value::Null;
            }
            if signed {
                body["signed"] = json!(true);
            }
            if no_signed {
                body["signed"] = json!(false);
            }
            if no_geo {
                body["countries"] = json!([]);
                body["cities"] = json!([]);
            }
            if clear_device {
                body["clear_device"] = json!(true);
            }
            if no_velocity {
                body["velocity"] = Value::Null;
            }
            lock_body(&mut body, locks);
            if body.as_object().is_some_and(|o| o.is_empty()) {
                bail!("nothing to update: give --name, --provider, --workload, --models, an expiry, a lock, a limit or a policy option");
            }
            let v = admin.patch(&format!("keys/{id}"), &body)?;
            if clear_device {
                if let Some(k) = state.keys.iter_mut().find(|k| k.id == id) {
                    k.device_fingerprint = None;
                    state.save()?;
                }
            }
            emit(json_out, v.clone(), || {
                let mut out = format!("Updated {}", key_text(&v));
                if let Some(secret) = v["signing_secret"].as_str() {
                    out.push_str(&format!("\n{SECRET_SHOWN_ONCE}:\n{secret}"));
                }
                out
            })
        }
        KeysCommand::Revoke { id } => {
            let v = admin.post(&format!("keys/{id}/revoke"), &json!({}))?;
            state.keys.retain(|k| k.id != id);
            state.save()?;
            emit(json_out, v.clone(), || {
                format!(
                    "Revoked {}. Requests with it are refused from now on.",
                    s(&v["id"])
                )
            })
        }
        KeysCommand::Lock { id, ip } => {
            let v = admin.post(&format!("keys/{id}/lock"), &json!({ "ip": ip }))?;
            emit(json_out, v.clone(), || {
                format!(
                    "Key {} is bound to {}; requests from other addresses are refused (ip_locked). `latchkey keys unbind {}` lets the next request re-bind it.",
                    s(&v["id"]),
                    s(&v["bound_ip"]),
                    s(&v["id"])
                )
            })
        }
        KeysCommand::Unbind { id } => {
            let v = admin.post(&format!("keys/{id}/unbind"), &json!({}))?;
            emit(json_out, v.clone(), || {
                format!(
                    "Key {} is unbound; an auto-bind key binds to the address of its next request.",
                    s(&v["id"])
                )
            })
        }
        KeysCommand::BindDevice { id, fingerprint } => {
            let fp = match fingerprint {
                Some(f) => f.trim().to_string(),
                None => super::device::this_machine()?,
            };
            let v = admin.post(
                &format!("keys/{id}/bind-device"),
                &json!({ "fingerprint": fp }),
            )?;
            let saved = match state.keys.iter_mut().find(|k| k.id == id) {
                Some(k) => {
                    k.device_fingerprint = Some(fp.clone());
                    true
                }
                None => false,
            };
            if saved {
                state.save()?;
            }
            let mut out = v.clone();
            out["fingerprint"] = json!(fp);
            out["saved"] = json!(saved);
            emit(json_out, out, || {
                let mut t = format!(
                    "Key {} is bound to this device. Clients must send the header\n  x-device-fingerprint: {fp}\n",
                    s(&v["id"])
                );
                if saved {
                    t.push_str("`latchkey env` prints it as LATCHKEY_DEVICE_FINGERPRINT.");
                } else {
                    t.push_str("This key was not created by this CLI, so the fingerprint is not saved: keep it now.");
                }
                t
            })
        }
        KeysCommand::Suspend { id, reason } => {
            let mut body = json!({});
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            let v = admin.post(&format!("keys/{id}/suspend"), &body)?;
            emit(json_out, v.clone(), || {
                format!(
                    "Suspended {}: requests with it are refused (key_suspended) until `latchkey keys reinstate {}`.",
                    s(&v["id"]),
                    s(&v["id"])
                )
            })
        }
        KeysCommand::Reinstate { id } => {
            let v = admin.post(&format!("keys/{id}/reinstate"), &json!({}))?;
            emit(json_out, v.clone(), || {
                format!("Reinstated {}: it is active again.", s(&v["id"]))
            })
        }
    }
}

fn lockdown_body(provider: Option<String>, global: bool) -> Value {
    let scope = match (global, &provider) {
        (true, _) => "global",
        (false, Some(_)) => "provider",
        (false, None) => "tenant",
    };
    let mut body = json!({ "scope": scope });
    if let Some(p) = provider {
        body["provider"] = json!(p);
    }
    body
}

fn lockdown_text(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["lockdowns"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    vec![
                        s(&e["scope"]),
                        s(&e["tenant"]),
                        e["provider"].as_str().unwrap_or("(all)").to_string(),
                        s(&e["reason"]),
                        s(&e["created_at"]),
                        s(&e["created_by"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return "No lockdown in force.".into();
    }
    format!(
        "LOCKDOWN IN FORCE: covered requests are refused with `lockdown` (503).\n{}",
        table(
            &["SCOPE", "TENANT", "PROVIDER", "REASON", "SINCE", "BY"],
            rows
        )
    )
}

fn lockdown(state: &CliState, json_out: bool, cmd: LockdownCommand) -> anyhow::Result<()> {
    let admin = Admin::from_env_or_login(state)?;
    match cmd {
        LockdownCommand::On {
            provider,
            global,
            reason,
        } => {
            let mut body = lockdown_body(provider, global);
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            let v = admin.post("lockdown", &body)?;
            emit(json_out, v.clone(), || lockdown_text(&v))
        }
        LockdownCommand::Off { provider, global } => {
            let v = admin.post("lockdown/lift", &lockdown_body(provider, global))?;
            emit(json_out, v.clone(), || {
                let head = if v["lifted"] == json!(true) {
                    "Lockdown lifted."
                } else {
                    "That lockdown was not on."
                };
                format!("{head}\n{}", lockdown_text(&v))
            })
        }
        LockdownCommand::Status => {
            let v = admin.get("lockdown")?;
            emit(json_out, v.clone(), || lockdown_text(&v))
        }
    }
}

fn incidents(state: &CliState, json_out: bool, cmd: IncidentsCommand) -> anyhow::Result<()> {
    let admin = Admin::from_env_or_login(state)?;
    match cmd {
        IncidentsCommand::List { limit } => {
            let v = admin.get(&format!("incidents?limit={limit}"))?;
            emit(json_out, v.clone(), || {
                let rows: Vec<Vec<String>> = v["incidents"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|i| {
                                vec![
                                    s(&i["id"]),
                                    s(&i["created_at"]),
                                    s(&i["kind"]),
                                    s(&i["key_id"]),
                                    if i["resolved"] == json!(true) {
                                        "resolved".into()
                                    } else {
                                        "open".into()
                                    },
                                    match &i["detail"] {
                                        Value::String(t) => t.clone(),
                                        other => other.to_string(),
                                    },
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if rows.is_empty() {
                    return "No incidents.".into();
                }
                table(&["ID", "TIME", "KIND", "KEY", "STATE", "DETAIL"], rows)
            })
        }
        IncidentsCommand::Resolve { id } => {
            let v = admin.post(&format!("incidents/{id}/resolve"), &json!({}))?;
            emit(json_out, v.clone(), || format!("Resolved {}.", s(&v["id"])))
        }
    }
}

fn env(
    state: &CliState,
    json_out: bool,
    key: Option<String>,
    provider: Option<String>,
) -> anyhow::Result<()> {
    let admin = Admin::from_env_or_login(state)?;
    let status = admin.get("status")?;
    let gateway = s(&status["gateway_url"]);
    let providers = admin.get("providers")?;
    let server_keys = admin.get("keys")?;
    let active = |id: &str| {
        server_keys["keys"].as_array().is_some_and(|a| {
            a.iter()
                .any(|k| k["id"] == json!(id) && k["status"] == json!("active"))
        })
    };
    let mut chosen: Vec<(String, &SavedKey)> = Vec::new();
    // Newest key first, so the newest wins per provider.
    for k in state.keys.iter().rev() {
        if key
            .as_ref()
            .is_some_and(|want| want != &k.id && want != &k.name)
            || !active(&k.id)
        {
            continue;
        }
        for p in &k.providers {
            let p = if p == "*" {
                match &provider {
                    Some(want) => want.clone(),
                    None => continue,
                }
            } else {
                p.clone()
            };
            if provider.as_ref().is_some_and(|want| want != &p) {
                continue;
            }
            if !chosen.iter().any(|(cp, _)| cp == &p) {
                chosen.push((p, k));
            }
        }
    }
    if chosen.is_empty() {
        bail!("no active proxy key created by this CLI matches; create one with `latchkey keys create --name NAME --provider PROVIDER`");
    }
    let mut lines = Vec::new();
    let mut vars = serde_json::Map::new();
    let device = chosen
        .iter()
        .find_map(|(_, k)| k.device_fingerprint.clone());
    for (p, k) in chosen {
        let info = providers["providers"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == json!(p)))
            .cloned()
            .unwrap_or(Value::Null);
        let upper = p.to_uppercase().replace('-', "_");
        let key_var = info["env_key"]
            .as_str()
            .map(str::to_string)
            .unwrap_or(format!("{upper}_API_KEY"));
        let url_var = info["env_base_url"]
            .as_str()
            .map(str::to_string)
            .unwrap_or(format!("{upper}_BASE_URL"));
        let base = format!(
            "{}/proxy/{}{}",
            gateway.trim_end_matches('/'),
            p,
            info["sdk_base_path"].as_str().unwrap_or("")
        );
        lines.push(format!("# {} ({}) via Latchkey", p, k.name));
        lines.push(format!("{key_var}={}", k.key));
        lines.push(format!("{url_var}={base}"));
        vars.insert(key_var, json!(k.key));
        vars.insert(url_var, json!(base));
    }
    if let Some(fp) = device {
        lines.extend(
            [
                "# Device-bound key: send this value in the x-device-fingerprint header.",
                "#   shell:  curl -H \"x-device-fingerprint: $LATCHKEY_DEVICE_FINGERPRINT\" ...",
                "#   Python: OpenAI(default_headers={\"x-device-fingerprint\": os.environ[\"LATCHKEY_DEVICE_FINGERPRINT\"]})",
                "#   Node:   new OpenAI({ defaultHeaders: { \"x-device-fingerprint\": process.env.LATCHKEY_DEVICE_FINGERPRINT } })",
            ]
            .map(String::from),
        );
        lines.push(format!("{DEVICE_ENV}={fp}"));
        vars.insert(DEVICE_ENV.into(), json!(fp));
    }
    emit(json_out, Value::Object(vars), || lines.join("\n"))
}

/// The variable `latchkey env` prints a device fingerprint in.
const DEVICE_ENV: &str = "LATCHKEY_DEVICE_FINGERPRINT";

fn audit_text(v: &Value) -> String {
    let rows = v["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    vec![
                        s(&e["seq"]),
                        s(&e["ts"]),
                        s(&e["actor"]),
                        s(&e["action"]),
                        s(&e["target"]),
                        s(&e["decision"]),
                        s(&e["status"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DECISION", "STATUS",
        ],
        rows,
    )
}

fn audit_verify(state: &CliState, json_out: bool) -> anyhow::Result<()> {
    let v = Admin::from_env_or_login(state)?.get("audit/verify")?;
    emit(json_out, v.clone(), || {
        let mut out = Vec::new();
        for c in v["chains"].as_array().into_iter().flatten() {
            if c["ok"] == json!(true) {
                out.push(format!(
                    "chain {}: OK ({} events)",
                    s(&c["chain"]),
                    s(&c["rows"])
                ));
            } else {
                out.push(format!(
                    "chain {}: BROKEN at seq {}: {}",
                    s(&c["chain"]),
                    s(&c["first_broken_seq"]),
                    s(&c["reason"])
                ));
            }
        }
        if out.is_empty() {
            out.push("no audit events yet".into());
        }
        out.join("\n")
    })?;
    if v["ok"] != json!(true) {
        bail!("audit chain verification failed");
    }
    Ok(())
}
