//! The declarative policy document, as written in TOML (or JSON, through the same serde
//! types). See the [module docs](super) for the format reference.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pii::{PiiKind, RedactScope};

/// A policy document: a name, a mode, an explicit default and an ordered list of rules.
/// Parse and compile it with [`Policy::from_toml`]; [`Policy::parse_toml`] and
/// [`Policy::compile`] do the two steps separately (the admin API may accept JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Name shown in audit events and `latchkey policy test`.
    pub name: String,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `enforce` (default) or `shadow`.
    #[serde(default)]
    pub mode: Mode,
    /// The action when no rule matches. Required: `allow`, `block`, `warn` or `hold`.
    pub default: Action,
    /// Message attached to default decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_message: Option<String>,
    /// Rules, evaluated in order; the first that matches decides.
    #[serde(default, rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// Whether decisions are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Decisions are applied.
    #[default]
    Enforce,
    /// Decisions are evaluated and audited but the request is forwarded unchanged.
    Shadow,
}

/// What happens to a request a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Forward the request.
    Allow,
    /// Refuse with `403 policy_blocked`.
    Block,
    /// Rewrite PII in the body (see the rule's `[rule.redact]`), then forward.
    Redact,
    /// Park the request until a human approves or denies it.
    Hold,
    /// Forward, and flag the request in the audit log.
    Warn,
    /// Send the request to another provider and/or model (the rule's `[rule.route]`).
    Route,
}

impl Action {
    /// The name used in policies and audit events (`block`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::Redact => "redact",
            Action::Hold => "hold",
            Action::Warn => "warn",
            Action::Route => "route",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule: conditions and the action taken when they all hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique, non-empty identifier, reported in decisions and audit events.
    pub id: String,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What to do when the rule matches.
    pub action: Action,
    /// Message carried by the decision (shown to the client on `block`, to approvers on
    /// `hold`, in the audit log always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions; all given ones must hold. Omitted: the rule matches every request.
    #[serde(default, rename = "match")]
    pub conditions: Match,
    /// Target for `action = "route"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
    /// Detectors for `action = "redact"`; omitted: every built-in detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redact: Option<RedactConfig>,
}

/// A rule's conditions. Every field is optional; a field that is present must hold (AND),
/// and a list holds when any of its entries does (OR).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Provider namespaces (globs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<String>>,
    /// HTTP methods (globs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Upstream paths without the query string (globs; `*` crosses `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Requested models (globs). Never matches a request whose model is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Workloads (globs). Never matches a request without a workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Vec<String>>,
    /// Proxy-key ids (globs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ids: Option<Vec<String>>,
    /// Proxy-key names (globs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_names: Option<Vec<String>>,
    /// Proxy-key labels: every listed label must be present with a value matching the glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_labels: Option<BTreeMap<String, String>>,
    /// Request headers: every listed header must be present with a value matching the glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Substrings of the prompt text (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_contains: Option<Vec<String>>,
    /// Regexes over the prompt text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_regex: Option<Vec<String>>,
    /// Tool names offered or called (globs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Substrings of any tool call's arguments (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_args_contains: Option<Vec<String>>,
    /// Regexes over each tool call's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_args_regex: Option<Vec<String>>,
}

/// Where a `route` decision sends the request. At least one field is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Provider namespace to send to instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model to use instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Which detectors a `redact` rule runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// Built-in detectors; omitted: all of them.
    #[serde(default = "all_builtin")]
    pub detectors: Vec<PiiKind>,
    /// Custom regexes (Rust `regex` syntax), redacted as `[REDACTED:CUSTOM]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<String>,
    /// `prompt_fields` (default) or `all_strings`.
    #[serde(default)]
    pub scope: RedactScope,
}

fn all_builtin() -> Vec<PiiKind> {
    PiiKind::BUILTIN.to_vec()
}

impl Default for RedactConfig {
    fn default() -> Self {
        RedactConfig {
            detectors: all_builtin(),
            custom: Vec::new(),
            scope: RedactScope::default(),
        }
    }
}
