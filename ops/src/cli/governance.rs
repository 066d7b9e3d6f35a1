//! `latchkey policy apply|get|detach|delete`, `latchkey holds …`, `latchkey limits …`, and the
//! limit flags of `keys create|update`.

use super::client::Admin;
use super::commands::{emit, s, table};
use super::state::CliState;
use super::{HoldsCommand, LimitArgs, LimitsCommand, ModelsCommand};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::Path;

/// Writes the given limit flags into a limits object (kept fields stay).
pub fn merge_limits(into: &mut Value, l: &LimitArgs) {
    if !into.is_object() {
        *into = json!({});
    }
    if let Some(v) = l.rpm {
        into["rpm"] = json!(v);
    }
    if let Some(v) = l.tpm {
        into["tpm"] = json!(v);
    }
    if let Some(v) = l.budget_daily {
        into["budget_daily_usd"] = json!(v);
    }
    if let Some(v) = l.budget_monthly {
        into["budget_monthly_usd"] = json!(v);
    }
}

/// One line describing a limits object: `60 rpm, 10000 tpm, $5.00/day`.
pub fn limits_text(l: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(v) = l["rpm"].as_u64() {
        parts.push(format!("{v} rpm"));
    }
    if let Some(v) = l["tpm"].as_u64() {
        parts.push(format!("{v} tpm"));
    }
    if let Some(v) = l["budget_daily_usd"].as_f64() {
        parts.push(format!("${v:.2}/day"));
    }
    if let Some(v) = l["budget_monthly_usd"].as_f64() {
        parts.push(format!("${v:.2}/month"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn policy_row(p: &Value) -> Vec<String> {
    let keys = p["keys"]
        .as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    vec![
        s(&p["name"]),
        s(&p["mode"]),
        s(&p["rules"]),
        s(&p["fingerprint"]).chars().take(12).collect(),
        if p["tenant_default"] == json!(true) {
            "yes".into()
        } else {
            "".into()
        },
        if keys.is_empty() { "-".into() } else { keys },
    ]
}

const POLICY_HEADER: [&str; 6] = ["NAME", "MODE", "RULES", "VERSION", "DEFAULT", "KEYS"];

/// `latchkey policy apply FILE [--key ID | --tenant-default]`.
pub fn policy_apply(
    state: &CliState,
    json_out: bool,
    file: &Path,
    key: Option<String>,
    tenant_default: bool,
) -> anyhow::Result<()> {
    let document =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let admin = Admin::from_env_or_login(state)?;
    let mut body = json!({ "document": document });
    if let Some(k) = key {
        body["key"] = json!(k);
    }
    if tenant_default {
        body["tenant_default"] = json!(true);
    }
    let v = admin.post("policies", &body)?;
    emit(json_out, v.clone(), || {
        format!(
            "Applied policy {} ({} rules, {}, version {}). It decides from the next request.\n{}",
            s(&v["name"]),
            s(&v["rules"]),
            s(&v["mode"]),
            s(&v["fingerprint"]).chars().take(12).collect::<String>(),
            table(&POLICY_HEADER, vec![policy_row(&v)])
        )
    })
}

/// `latchkey policy get [NAME | --key ID]`.
pub fn policy_get(
    state: &CliState,
    json_out: bool,
    name: Option<String>,
    key: Option<String>,
) -> anyhow::Result<()> {
    let admin = Admin::from_env_or_login(state)?;
    let name = match (name, key) {
        (Some(n), _) => Some(n),
        (None, Some(k)) => {
            let key = admin.get(&format!("keys/{k}"))?;
            match key["policy"].as_str() {
                Some(p) => Some(p.to_string()),
                None => {
                    let all = admin.get("policies")?;
                    match all["tenant_default"].as_str() {
                        Some(d) => Some(d.to_string()),
                        None => {
                            return emit(json_out, json!({ "key": k, "policy": null }), || {
                                format!("Key {k} has no policy and the tenant has no default: every request is allowed by policy.")
                            })
                        }
                    }
                }
            }
        }
        (None, None) => None,
    };
    match name {
        Some(n) => {
            let v = admin.get(&format!("policies/{n}"))?;
            emit(json_out, v.clone(), || {
                format!(
                    "{}\n\n{}",
                    table(&POLICY_HEADER, vec![policy_row(&v)]),
                    s(&v["document"])
                )
            })
        }
        None => {
            let v = admin.get("policies")?;
            emit(json_out, v.clone(), || {
                let rows: Vec<Vec<String>> = v["policies"]
                    .as_array()
                    .map(|a| a.iter().map(policy_row).collect())
                    .unwrap_or_default();
                if rows.is_empty() {
                    "No policies. Write one (docs/policies.md) and `latchkey policy apply FILE`."
                        .into()
                } else {
                    table(&POLICY_HEADER, rows)
                }
            })
        }
    }
}

/// `latchkey policy detach (--key ID | --tenant-default)`.
pub fn policy_detach(
    state: &CliState,
    json_out: bool,
    key: Option<String>,
    tenant_default: bool,
) -> anyhow::Result<()> {
    let admin = Admin::from_env_or_login(state)?;
    let body = match key {
        Some(k) => json!({ "key": k }),
        None => json!({ "tenant_default": tenant_default }),
    };
    let v = admin.post("policies/detach", &body)?;
    emit(json_out, v.clone(), || {
        format!("Detached ({}).", v["detached"])
    })
}

/// `latchkey policy delete NAME`.
pub fn policy_delete(state: &CliState, json_out: bool, name: &str) -> anyhow::Result<()> {
    let v = Admin::from_env_or_login(state)?.delete(&format!("policies/{name}"))?;
    emit(json_out, v, || format!("Deleted policy {name}."))
}

/// `latchkey holds …`.
pub fn holds(state: &CliState, json_out: bool, cmd: HoldsCommand) -> anyhow::Result<()> {
    let admin = Admin::from_env_or_login(state)?;
    match cmd {
        HoldsCommand::List => {
            let v = admin.get("holds")?;
            emit(json_out, v.clone(), || {
                let rows: Vec<Vec<String>> = v["holds"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|h| {
                                vec![
                                    s(&h["id"]),
                                    s(&h["created_at"]),
                                    s(&h["key_id"]),
                                    format!(
                                        "{} {} {}",
                                        s(&h["provider"]),
                                        s(&h["method"]),
                                        s(&h["path"])
                                    ),
                                    s(&h["model"]),
                                    s(&h["rule"]),
                                    s(&h["expires_at"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if rows.is_empty() {
                    return "No requests are waiting for approval.".into();
                }
                table(
                    &["ID", "SINCE", "KEY", "REQUEST", "MODEL", "RULE", "EXPIRES"],
                    rows,
                )
            })
        }
        HoldsCommand::Approve { id } => {
            let v = admin.post(&format!("holds/{id}/approve"), &json!({}))?;
            emit(json_out, v, || {
                format!("Approved {id}: the request goes to the provider now.")
            })
        }
        HoldsCommand::Reject { id, reason } => {
            let body = match reason {
                Some(r) => json!({ "reason": r }),
                None => json!({}),
            };
            let v = admin.post(&format!("holds/{id}/reject"), &body)?;
            emit(json_out, v, || format!("Rejected {id}."))
        }
    }
}

fn scope_of(tenant: bool, workload: Option<String>) -> anyhow::Result<String> {
    match (tenant, workload) {
        (true, None) => Ok("tenant".into()),
        (false, Some(w)) => Ok(format!("workload:{w}")),
        _ => bail!("give --tenant or --workload NAME"),
    }
}

/// `latchkey limits …`.
pub fn limits(state: &CliState, json_out: bool, cmd: LimitsCommand) -> anyhow::Result<()> {
    let admin = Admin::from_env_or_login(state)?;
    match cmd {
        LimitsCommand::List => {
            let v = admin.get("limits")?;
            emit(json_out, v.clone(), || {
                let rows: Vec<Vec<String>> = v["limits"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|l| vec![s(&l["scope"]), limits_text(&l["limits"])])
                            .collect()
                    })
                    .unwrap_or_default();
                if rows.is_empty() {
                    return "No tenant or workload limits.".into();
                }
                table(&["SCOPE", "LIMITS"], rows)
            })
        }
        LimitsCommand::Set {
            tenant,
            workload,
            limits,
        } => {
            if limits.is_empty() {
                bail!("give at least one of --rpm, --tpm, --budget-daily, --budget-monthly");
            }
            let scope = scope_of(tenant, workload)?;
            let mut body = json!({});
            merge_limits(&mut body, &limits);
            let v = admin.put(&format!("limits/{scope}"), &body)?;
            emit(json_out, v.clone(), || {
                format!("Limits of {scope}: {}", limits_text(&v["limits"]))
            })
        }
        LimitsCommand::Clear { tenant, workload } => {
            let scope = scope_of(tenant, workload)?;
            let v = admin.delete(&format!("limits/{scope}"))?;
            emit(json_out, v, || format!("Removed the limits of {scope}."))
        }
    }
}

/// `latchkey models …`.
pub fn models(state: &CliState, json_out: bool, cmd: ModelsCommand) -> anyhow::Result<()> {
    let admin = Admin::from_env_or_login(state)?;
    match cmd {
        ModelsCommand::List => {
            let v = admin.get("models")?;
            emit(json_out, v.clone(), || {
                let rows: Vec<Vec<String>> = v["models"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|m| vec![s(&m["alias"]), s(&m["provider"]), s(&m["model"])])
                            .collect()
                    })
                    .unwrap_or_default();
                if rows.is_empty() {
                    return "No model aliases: /v1 sends requests to each key's first provider."
                        .into();
                }
                table(&["ALIAS", "PROVIDER", "MODEL"], rows)
            })
        }
        ModelsCommand::Set {
            alias,
            provider,
            model,
        } => {
            let v = admin.put(
                &format!("models/{alias}"),
                &json!({ "provider": provider, "model": model }),
            )?;
            emit(json_out, v.clone(), || {
                format!(
                    "{} → {} {}",
                    s(&v["alias"]),
                    s(&v["provider"]),
                    s(&v["model"])
                )
            })
        }
        ModelsCommand::Remove { alias } => {
            let v = admin.delete(&format!("models/{alias}"))?;
            emit(json_out, v, || format!("Removed {alias}."))
        }
    }
}
