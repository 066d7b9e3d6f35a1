//! Failover target selection: which of a provider's (or model registry entry's) targets — another
//! region, another credential, another provider's equivalent model — a request goes to next.
//!
//! Targets form priority groups: the lowest [`Target::priority`] with an eligible target wins, and
//! within it the choice is weighted random by [`Target::weight`]. Ordered failover is distinct
//! priorities; load spreading is equal priorities with weights; both mix. A target is eligible
//! when it has a weight above 0, is not in the request's `tried` list, and the caller's
//! `is_available` says so (typically: its circuit does not reject).
//!
//! The gateway moves a request only before the first response byte has gone to the client, for
//! one of the [`FailoverReason`]s; it then calls [`pick`] again with the failed target added to
//! `tried`. Randomness is an input, so selection is deterministic and testable.

use serde::{Deserialize, Serialize};

/// One place a request can be sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Stable identifier (also the circuit key's target part), e.g. `openai-eu` or
    /// `anthropic/claude-sonnet`.
    pub id: String,
    /// Relative share within its priority group (default 1). 0 drains the target: it is never
    /// picked, not even as a last resort.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Group order: lower is tried first (default 0).
    #[serde(default)]
    pub priority: u32,
}

fn default_weight() -> u32 {
    1
}

impl Target {
    /// A target with weight 1 in priority group `priority`.
    pub fn new(id: impl Into<String>, priority: u32) -> Target {
        Target {
            id: id.into(),
            weight: 1,
            priority,
        }
    }

    /// The same target with another weight.
    pub fn with_weight(mut self, weight: u32) -> Target {
        self.weight = weight;
        self
    }
}

/// Pick the target for the next attempt, or `None` when no target is eligible (the gateway then
/// answers `upstream_unavailable`).
///
/// Among the eligible targets (weight > 0, not in `tried`, `is_available(id)`), only those of the
/// lowest priority compete; one of them is chosen with probability proportional to its weight,
/// by `random % total_weight` walked over the group in list order. The same inputs always give
/// the same answer. `is_available` is called at most once per target, in list order (targets
/// already tried or drained are not asked about).
///
/// ```
/// use latchkey_policy::resilience::failover::{pick, Target};
///
/// let targets = vec![
///     Target::new("us-east", 0).with_weight(3),
///     Target::new("us-west", 0).with_weight(1),
///     Target::new("eu", 1),
/// ];
/// // Weighted within the first group: random 0..=2 → us-east, 3 → us-west (mod 4).
/// assert_eq!(pick(&targets, |_| true, &[], 2).map(|t| t.id.as_str()), Some("us-east"));
/// assert_eq!(pick(&targets, |_| true, &[], 7).map(|t| t.id.as_str()), Some("us-west"));
///
/// // us-east's circuit is open and us-west already failed: fall back to the next group.
/// let tried = vec!["us-west".to_string()];
/// let next = pick(&targets, |id| id != "us-east", &tried, 7);
/// assert_eq!(next.map(|t| t.id.as_str()), Some("eu"));
///
/// // Nothing left.
/// assert!(pick(&targets, |_| false, &[], 0).is_none());
/// ```
pub fn pick<'a, F>(
    targets: &'a [Target],
    is_available: F,
    tried: &[String],
    random: u64,
) -> Option<&'a Target>
where
    F: Fn(&str) -> bool,
{
    let eligible: Vec<&Target> = targets
        .iter()
        .filter(|t| t.weight > 0 && !tried.contains(&t.id) && is_available(&t.id))
        .collect();
    let best = eligible.iter().map(|t| t.priority).min()?;
    let group = || eligible.iter().copied().filter(move |t| t.priority == best);
    let total: u64 = group().fold(0u64, |sum, t| sum.saturating_add(u64::from(t.weight)));
    if total == 0 {
        return None;
    }
    let mut point = random % total;
    let mut last = None;
    for target in group() {
        let weight = u64::from(target.weight);
        if point < weight {
            return Some(target);
        }
        point -= weight;
        last = Some(target);
    }
    // Unreachable unless the weight sum saturated; the last member is the fair answer then.
    last
}

/// Why a request moved to another target (a metric label and an audit field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverReason {
    /// The target's circuit rejected the request.
    CircuitOpen,
    /// A spend cap on the target (credential or provider) was reached.
    SpendCap,
    /// A policy route sent it elsewhere.
    PolicyRoute,
    /// The attempt failed before the first response byte and the retry policy allows another.
    UpstreamFailure,
}

impl FailoverReason {
    /// `"circuit_open"`, `"spend_cap"`, `"policy_route"` or `"upstream_failure"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverReason::CircuitOpen => "circuit_open",
            FailoverReason::SpendCap => "spend_cap",
            FailoverReason::PolicyRoute => "policy_route",
            FailoverReason::UpstreamFailure => "upstream_failure",
        }
    }
}

/// Whether a request may still move to another target: only before the first response byte went
/// to the client. (A trivial rule, named so call sites read as the contract.)
pub fn may_fail_over(first_byte_sent: bool) -> bool {
    !first_byte_sent
}

/// A target list that cannot work as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetsError {
    /// No targets at all.
    #[error("a failover target list needs at least one target")]
    Empty,
    /// A target's id is empty or only whitespace.
    #[error("a failover target has an empty id")]
    EmptyId,
    /// Two targets share an id.
    #[error("failover target `{0}` is listed twice")]
    DuplicateId(String),
    /// Every target has weight 0, so none can ever be picked.
    #[error("every failover target has weight 0")]
    AllDrained,
}

/// Check a configured target list: non-empty, ids present and unique, and at least one target
/// with a weight. (For config loaders; [`pick`] copes with any list.)
///
/// ```
/// use latchkey_policy::resilience::failover::{validate_targets, Target, TargetsError};
/// assert!(validate_targets(&[Target::new("a", 0), Target::new("b", 1)]).is_ok());
/// assert_eq!(
///     validate_targets(&[Target::new("a", 0), Target::new("a", 1)]),
///     Err(TargetsError::DuplicateId("a".into()))
/// );
/// ```
pub fn validate_targets(targets: &[Target]) -> Result<(), TargetsError> {
    if targets.is_empty() {
        return Err(TargetsError::Empty);
    }
    for (i, target) in targets.iter().enumerate() {
        if target.id.trim().is_empty() {
            return Err(TargetsError::EmptyId);
        }
        if targets[..i].iter().any(|other| other.id == target.id) {
            return Err(TargetsError::DuplicateId(target.id.clone()));
        }
    }
    if targets.iter().all(|t| t.weight == 0) {
        return Err(TargetsError::AllDrained);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn ids(targets: &[Target], tried: &[&str], down: &[&str], random: u64) -> Option<String> {
        let tried: Vec<String> = tried.iter().map(|s| s.to_string()).collect();
        pick(targets, |id| !down.contains(&id), &tried, random).map(|t| t.id.clone())
    }

    fn ordered() -> Vec<Target> {
        vec![
            Target::new("primary", 0),
            Target::new("secondary", 1),
            Target::new("tertiary", 2),
        ]
    }

    #[test]
    fn ordered_targets_go_in_priority_order() {
        let t = ordered();
        assert_eq!(ids(&t, &[], &[], 42).as_deref(), Some("primary"));
        assert_eq!(ids(&t, &["primary"], &[], 42).as_deref(), Some("secondary"));
        assert_eq!(
            ids(&t, &["primary", "secondary"], &[], 42).as_deref(),
            Some("tertiary")
        );
        assert_eq!(
            ids(&t, &["primary", "secondary", "tertiary"], &[], 42),
            None
        );
    }

    #[test]
    fn list_order_does_not_matter_for_priority() {
        let mut t = ordered();
        t.reverse();
        assert_eq!(ids(&t, &[], &[], 0).as_deref(), Some("primary"));
    }

    #[test]
    fn unavailable_targets_are_skipped() {
        let t = ordered();
        assert_eq!(ids(&t, &[], &["primary"], 0).as_deref(), Some("secondary"));
        assert_eq!(
            ids(&t, &["secondary"], &["primary"], 0).as_deref(),
            Some("tertiary")
        );
        assert_eq!(ids(&t, &[], &["primary", "secondary", "tertiary"], 0), None);
    }

    #[test]
    fn weights_split_random_space_exactly() {
        let t = vec![
            Target::new("a", 0).with_weight(5),
            Target::new("b", 0).with_weight(3),
            Target::new("c", 0).with_weight(2),
            Target::new("standby", 1).with_weight(100),
        ];
        let mut counts = std::collections::HashMap::new();
        for r in 0..10u64 {
            *counts.entry(ids(&t, &[], &[], r).unwrap()).or_insert(0) += 1;
        }
        assert_eq!(counts["a"], 5);
        assert_eq!(counts["b"], 3);
        assert_eq!(counts["c"], 2);
        assert!(!counts.contains_key("standby"));
        // Large random values wrap the same way.
        // u64::MAX % 10 == 5: past a's 0..5.
        assert_eq!(ids(&t, &[], &[], u64::MAX).as_deref(), Some("b"));
    }

    #[test]
    fn weights_renormalize_after_skipping() {
        let t = vec![
            Target::new("a", 0).with_weight(5),
            Target::new("b", 0).with_weight(3),
            Target::new("c", 0).with_weight(2),
        ];
        // Without "a" the group total is 5: 0..=2 → b, 3..=4 → c.
        let picks: Vec<_> = (0..5).map(|r| ids(&t, &["a"], &[], r).unwrap()).collect();
        assert_eq!(picks, ["b", "b", "b", "c", "c"]);
    }

    #[test]
    fn drained_targets_are_never_picked() {
        let t = vec![
            Target::new("drained", 0).with_weight(0),
            Target::new("backup", 1),
        ];
        for r in 0..10 {
            assert_eq!(ids(&t, &[], &[], r).as_deref(), Some("backup"));
        }
        assert_eq!(ids(&t, &["backup"], &[], 0), None);
    }

    #[test]
    fn empty_list_picks_nothing() {
        assert_eq!(ids(&[], &[], &[], 0), None);
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let t = vec![
            Target::new("a", 0).with_weight(u32::MAX),
            Target::new("b", 0).with_weight(u32::MAX),
        ];
        assert_eq!(ids(&t, &[], &[], 0).as_deref(), Some("a"));
        assert_eq!(ids(&t, &[], &[], u64::from(u32::MAX)).as_deref(), Some("b"));
    }

    #[test]
    fn availability_is_asked_once_per_candidate() {
        let t = vec![
            Target::new("a", 0),
            Target::new("b", 0).with_weight(0),
            Target::new("c", 1),
        ];
        let asked = RefCell::new(Vec::new());
        let tried = vec!["a".to_string()];
        let picked = pick(
            &t,
            |id| {
                asked.borrow_mut().push(id.to_string());
                true
            },
            &tried,
            0,
        );
        assert_eq!(picked.map(|t| t.id.as_str()), Some("c"));
        assert_eq!(*asked.borrow(), ["c"]);
    }

    #[test]
    fn targets_deserialize_with_defaults() {
        let t: Vec<Target> = serde_json::from_str(
            r#"[{"id": "openai-eu"}, {"id": "azure", "priority": 1, "weight": 4}]"#,
        )
        .unwrap();
        assert_eq!(t[0], Target::new("openai-eu", 0));
        assert_eq!(t[1], Target::new("azure", 1).with_weight(4));
        assert!(serde_json::from_str::<Target>(r#"{"id": "x", "wieght": 1}"#).is_err());
    }

    #[test]
    fn validation() {
        assert_eq!(validate_targets(&[]), Err(TargetsError::Empty));
        assert_eq!(
            validate_targets(&[Target::new(" ", 0)]),
            Err(TargetsError::EmptyId)
        );
        assert_eq!(
            validate_targets(&[Target::new("a", 0).with_weight(0)]),
            Err(TargetsError::AllDrained)
        );
        assert!(
            validate_targets(&[Target::new("a", 0).with_weight(0), Target::new("b", 0)]).is_ok()
        );
    }

    #[test]
    fn reasons_and_first_byte_rule() {
        assert_eq!(FailoverReason::CircuitOpen.as_str(), "circuit_open");
        assert_eq!(
            serde_json::to_value(FailoverReason::SpendCap).unwrap(),
            "spend_cap"
        );
        assert!(may_fail_over(false));
        assert!(!may_fail_over(true));
    }
}
