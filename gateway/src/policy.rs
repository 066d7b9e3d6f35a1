//! The policy stage: evaluate the key's policy (or its tenant's default) against the request and
//! apply the decision — forward, block, flag, redact, re-route or park for approval.
//!
//! The body is parsed once by the caller and shared by every rule; the compiled policy is the
//! `Arc` the request picked up from [`crate::policies::PolicyBook`], so a policy change applies
//! from the next request and never half-way through one. In `shadow` mode the decision is only
//! recorded (audit, metrics), and the request is forwarded unchanged.

use crate::errors::GatewayError;
use crate::resolve::ResolvedKey;
use crate::state::GatewayState;
use latchkey_policy::rules::{evaluate, Action, CompiledPolicy, Decision, KeyMeta, RequestView};
use latchkey_vault::holds::{HoldInfo, HoldOutcome};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// What the audit log and metrics record of a decision.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Policy name.
    pub policy: String,
    /// First 12 hex digits of the policy's fingerprint (the exact version that decided).
    pub version: String,
    /// The rule that matched (`None`: the default).
    pub rule: Option<String>,
    /// What the policy said.
    pub action: Action,
    /// Recorded but not enforced.
    pub shadow: bool,
    /// The hold this request waited in, if any.
    pub hold: Option<String>,
    /// How many values `redact` rewrote.
    pub redactions: usize,
}

impl Verdict {
    /// Appends the audit `detail` object as JSON text. Written by hand: it runs on every
    /// request a policy decides, and building a `serde_json::Value` first cost more than the
    /// rule evaluation it records.
    pub fn write_json(&self, out: &mut String) {
        out.push_str(r#"{"name":"#);
        push_json_str(out, &self.policy);
        out.push_str(r#","version":"#);
        push_json_str(out, &self.version);
        out.push_str(r#","rule":"#);
        push_opt_str(out, self.rule.as_deref());
        out.push_str(r#","action":""#);
        out.push_str(self.action.as_str());
        out.push_str(r#"","shadow":"#);
        out.push_str(if self.shadow { "true" } else { "false" });
        out.push_str(r#","hold":"#);
        push_opt_str(out, self.hold.as_deref());
        out.push_str(r#","redactions":"#);
        out.push_str(&self.redactions.to_string());
        out.push('}');
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }
}

/// Appends a JSON string literal or `null`.
pub fn push_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    }
}

/// The request as the policy sees it, and what the stage may change.
pub struct Subject<'a> {
    /// Provider namespace.
    pub provider: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Upstream path.
    pub path: &'a str,
    /// The requested model, if known.
    pub model: Option<&'a str>,
    /// Request headers (only read when a rule has a `headers` condition).
    pub headers: &'a http::HeaderMap,
    /// The parsed JSON body; `redact` rewrites it in place.
    pub body: Option<&'a mut Value>,
    /// The request id (for holds).
    pub request_id: &'a str,
}

/// What the caller must do after the stage.
#[derive(Debug, Default)]
pub struct Effects {
    /// The body was rewritten (redaction): serialize it and forward that instead.
    pub body_changed: bool,
    /// Send to this provider and/or model instead.
    pub route: Option<latchkey_policy::rules::Route>,
    /// Forward, but flag it (`warn`).
    pub warned: bool,
    /// Park the request for approval first ([`hold`]).
    pub hold: Option<HoldInfo>,
}

/// Evaluates `policy` and applies its decision. `Err` is the refusal to send; on `Ok` the
/// request goes on with the returned [`Effects`]. The verdict is stored in `verdict` either way,
/// so refusals are audited with the rule that fired.
pub async fn enforce(
    state: &Arc<GatewayState>,
    key: &ResolvedKey,
    policy: &CompiledPolicy,
    subject: Subject<'_>,
    verdict: &mut Option<Verdict>,
) -> Result<Effects, GatewayError> {
    let header_pairs: Vec<(&str, &str)> = if policy.needs_headers() {
        subject
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect()
    } else {
        Vec::new()
    };
    let decision = {
        let view = RequestView {
            provider: subject.provider,
            method: subject.method,
            path: subject.path,
            model: subject.model,
            workload: key.workload.as_deref(),
            key: KeyMeta {
                id: &key.id,
                name: &key.name,
                labels: &[],
            },
            headers: &header_pairs,
            body: subject.body.as_deref(),
        };
        let extracted = view.extract();
        evaluate(policy, &view, &extracted)
    };
    let v = verdict.insert(Verdict {
        policy: policy.name().to_string(),
        version: policy.fingerprint().chars().take(12).collect(),
        rule: decision.rule_id.clone(),
        action: decision.action,
        shadow: decision.shadow,
        hold: None,
        redactions: 0,
    });
    state.metrics.policy_decision(
        policy.name(),
        decision.action.as_str(),
        if decision.shadow { "shadow" } else { "enforce" },
    );
    let mut effects = Effects::default();
    match decision.enforced_action() {
        Action::Allow => {}
        Action::Warn => effects.warned = true,
        Action::Block => return Err(blocked(&decision)),
        Action::Redact => {
            if let (Some(spec), Some(body)) = (decision.redact.as_ref(), subject.body) {
                let findings = spec.apply(body);
                v.redactions = findings.len();
                effects.body_changed = !findings.is_empty();
            }
        }
        Action::Route => effects.route = decision.route.clone(),
        Action::Hold => {
            let mut info = HoldInfo::new(
                &key.tenant,
                &key.id,
                subject.provider,
                subject.method,
                subject.path,
                decision.rule_id.as_deref().unwrap_or("default"),
            );
            info.model = subject.model.map(str::to_string);
            info.message = decision.message.clone();
            info.request_id = Some(subject.request_id.to_string());
            v.hold = Some(info.id.clone());
            effects.hold = Some(info);
        }
    }
    Ok(effects)
}

fn blocked(decision: &Decision) -> GatewayError {
    let message = match (&decision.message, &decision.rule_id) {
        (Some(m), _) => m.clone(),
        (None, Some(rule)) => format!("blocked by policy rule {rule:?}"),
        (None, None) => "blocked by policy (no rule allowed this request)".to_string(),
    };
    GatewayError::new(403, "policy_blocked", message)
}

/// Parks the request until an admin decides, the hold times out, or `client_gone` completes
/// (the client disconnected: the hold is withdrawn and the request never sent).
pub async fn hold(
    state: &Arc<GatewayState>,
    mut info: HoldInfo,
    client_gone: impl std::future::Future<Output = ()>,
) -> Result<(), GatewayError> {
    let timeout = state.options.hold_timeout;
    info.expires_at = chrono::Duration::from_std(timeout)
        .ok()
        .map(|d| info.created_at + d);
    let announce = serde_json::json!({
        "text": format!(
            "Latchkey: a request is waiting for approval: {} {} on {} by key {} (rule {}). Approve with `latchkey holds approve {}` or reject with `latchkey holds reject {}`; it times out in {} s.",
            info.method, info.path, info.provider, info.key_id, info.rule, info.id, info.id, timeout.as_secs()
        ),
        "event": "hold.created",
        "hold": info,
        "approve": format!("POST /api/v1/holds/{}/approve", info.id),
        "reject": format!("POST /api/v1/holds/{}/reject", info.id),
    });
    let id = info.id.clone();
    let request_id = info.request_id.clone().unwrap_or_default();
    let parked = state.holds.park(info).map_err(|e| {
        state.metrics.hold("queue_full");
        GatewayError::new(503, "hold_queue_full", format!("{e}; try again later"))
            .with_header("retry-after", "30")
    })?;
    state.notifier.notify(announce);
    tracing::info!(%request_id, hold = %id, "request held for approval");
    let outcome = tokio::select! {
        outcome = parked.wait(timeout) => outcome,
        () = client_gone => {
            // Dropping the parked hold withdrew it.
            tracing::info!(%request_id, hold = %id, "client left while its request was held");
            state.metrics.hold("abandoned");
            return Err(GatewayError::new(499, "client_closed", "the client disconnected"));
        }
    };
    match outcome {
        HoldOutcome::Approved { by } => {
            tracing::info!(%request_id, hold = %id, %by, "held request approved");
            state.metrics.hold("approved");
            Ok(())
        }
        HoldOutcome::Rejected { by, reason } => {
            tracing::info!(%request_id, hold = %id, %by, "held request rejected");
            state.metrics.hold("rejected");
            let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
            Err(GatewayError::new(
                403,
                "policy_blocked",
                format!("the request was held for approval ({id}) and an admin rejected it{why}"),
            ))
        }
        HoldOutcome::TimedOut => Err({
            state.metrics.hold("timeout");
            GatewayError::new(
                403,
                "hold_timeout",
                format!(
                    "the request was held for approval ({id}) and nobody approved it within {} s",
                    timeout.as_secs()
                ),
            )
        }),
    }
}

/// Default time a held request waits for a decision.
pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_written_detail_is_valid_json_whatever_the_names() {
        let v = Verdict {
            policy: "we\"ird\\name\n".into(),
            version: "0123456789ab".into(),
            rule: Some("r-1".into()),
            action: Action::Warn,
            shadow: true,
            hold: None,
            redactions: 3,
        };
        let mut text = String::new();
        v.write_json(&mut text);
        let j: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(j["name"], "we\"ird\\name\n");
        assert_eq!(j["rule"], "r-1");
        assert_eq!(j["action"], "warn");
        assert_eq!(j["shadow"], true);
        assert!(j["hold"].is_null());
        assert_eq!(j["redactions"], 3);
    }
}
