//! Choosing the upstream target of an attempt: the requested provider, or one of its failover
//! targets when its circuit is open or an earlier attempt could not connect.
//!
//! Failover happens only before the first response byte: at admission (open circuit) and when
//! Pingora reports a connection failure or a reset before any response
//! ([`crate::proxy`]'s `fail_to_connect` / `error_while_proxy`). The response names the target
//! that served it in `x-latchkey-target`.

use crate::errors::GatewayError;
use crate::state::GatewayState;
use latchkey_policy::resilience::circuit::Admission;
use latchkey_policy::resilience::failover::{pick, Target};
use latchkey_vault::model::Provider;

/// The target chosen for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Provider id to send to.
    pub provider: String,
    /// Model to use there instead of the requested one.
    pub model: Option<String>,
    /// The circuit admitted this attempt as a half-open probe.
    pub probe: bool,
}

/// A provider's targets: itself first (priority 0), then its failover list.
pub fn targets(p: &Provider) -> Vec<Target> {
    let mut v = Vec::with_capacity(1 + p.failover.len());
    v.push(Target::new(p.id.clone(), 0));
    for t in &p.failover {
        v.push(Target::new(t.provider.clone(), t.priority.max(1)).with_weight(t.weight.max(1)));
    }
    v
}

/// Picks the target for the next attempt, skipping `tried` targets and open circuits, and takes
/// its circuit's admission. `Err` is the fail-fast refusal (every target unavailable).
pub fn choose(
    state: &GatewayState,
    tenant: &str,
    primary: &Provider,
    tried: &[String],
) -> Result<Chosen, GatewayError> {
    let all = targets(primary);
    let mut skipped: Vec<String> = tried.to_vec();
    loop {
        let target = pick(
            &all,
            |id| state.circuits.is_available(tenant, id),
            &skipped,
            rand::random(),
        );
        let Some(target) = target else {
            return Err(unavailable(state, tenant, primary, &all));
        };
        match state.circuits.admit(tenant, &target.id) {
            Admission::Reject { .. } => {
                // Lost the race for a half-open probe slot: try the next target.
                skipped.push(target.id.clone());
            }
            admission => {
                let model = primary
                    .failover
                    .iter()
                    .find(|f| f.provider == target.id)
                    .and_then(|f| f.model.clone());
                return Ok(Chosen {
                    provider: target.id.clone(),
                    model,
                    probe: admission.is_probe(),
                });
            }
        }
    }
}

/// `upstream_unavailable` with the soonest `retry-after` among the provider's targets.
fn unavailable(
    state: &GatewayState,
    tenant: &str,
    primary: &Provider,
    all: &[Target],
) -> GatewayError {
    let soonest = state
        .circuits
        .snapshot(Some(tenant))
        .into_iter()
        .filter(|c| all.iter().any(|t| t.id == c.target))
        .filter_map(|c| c.snapshot.retry_after_ms)
        .min();
    let mut e = GatewayError::upstream_unavailable(format!(
        "provider {:?} is unavailable (its circuit breaker is open{}); try again later",
        primary.id,
        if primary.failover.is_empty() {
            ""
        } else {
            ", and so are its failover targets"
        }
    ));
    if let Some(ms) = soonest {
        e = e.with_header("retry-after", ms.div_ceil(1000).max(1).to_string());
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_vault::model::FailoverTarget;

    #[test]
    fn the_provider_comes_first_then_its_failover_targets() {
        let mut p = latchkey_vault::catalog::builtin()
            .iter()
            .find(|p| p.id == "openai")
            .unwrap()
            .clone();
        p.failover = vec![FailoverTarget {
            provider: "azure-openai".into(),
            priority: 0,
            weight: 0,
            model: Some("gpt-4o".into()),
        }];
        let t = targets(&p);
        assert_eq!(t[0].id, "openai");
        assert_eq!(t[0].priority, 0);
        // A failover target never ties with the provider itself and always has a weight.
        assert_eq!((t[1].priority, t[1].weight), (1, 1));
    }
}
