//! Evaluation: first matching rule wins, else the policy's default.

use std::fmt;

use serde::Serialize;

use super::compile::{
    CompiledPolicy, CompiledRule, RedactSpec, FIELDS, PROMPT_CONTAINS, PROMPT_REGEX,
};
use super::format::{Action, Mode, Route};
use super::glob::Glob;
use super::request::{Extracted, RequestView};

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// What the policy says to do.
    pub action: Action,
    /// The rule that matched; `None` for the default.
    pub rule_id: Option<String>,
    /// The rule's (or the default's) message.
    pub message: Option<String>,
    /// The policy runs in shadow mode: record this decision, but forward the request unchanged
    /// (see [`Decision::enforced_action`]).
    pub shadow: bool,
    /// Target of a `route` decision.
    pub route: Option<Route>,
    /// Detectors of a `redact` decision.
    pub redact: Option<RedactSpec>,
}

impl Decision {
    /// The action to actually apply: [`Action::Allow`] in shadow mode, else [`Decision::action`].
    pub fn enforced_action(&self) -> Action {
        if self.shadow {
            Action::Allow
        } else {
            self.action
        }
    }

    /// Whether no rule matched and this is the policy's default.
    pub fn is_default(&self) -> bool {
        self.rule_id.is_none()
    }
}

impl fmt::Display for Decision {
    /// One line for `latchkey policy test`: `block by rule no-shell: no shell tools (shadow)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.action)?;
        match &self.rule_id {
            Some(id) => write!(f, " by rule {id}")?,
            None => f.write_str(" by default")?,
        }
        if let Some(route) = &self.route {
            let provider = route.provider.as_deref().unwrap_or("(same provider)");
            let model = route.model.as_deref().unwrap_or("(same model)");
            write!(f, " to {provider} / {model}")?;
        }
        if let Some(spec) = &self.redact {
            let mut names: Vec<&str> = spec
                .detectors()
                .kinds()
                .iter()
                .map(|k| k.as_str())
                .collect();
            if !spec.detectors().custom_patterns().is_empty() {
                names.push("custom");
            }
            write!(f, " [{}]", names.join(", "))?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if self.shadow {
            f.write_str(" (shadow: not enforced)")?;
        }
        Ok(())
    }
}

/// Evaluates `policy` against a request: the first rule whose conditions all hold decides,
/// otherwise the default. Cheap conditions (provider, method, path, model, workload, key,
/// headers, tools) are checked before text scans; each text field's policy-wide matcher runs
/// at most once per request, and a rule's own matcher only when that one found something. Never panics, whatever the body.
///
/// ```
/// use latchkey_policy::rules::{evaluate, Action, Extracted, Policy, RequestView};
/// use serde_json::json;
///
/// let policy = Policy::from_toml(r#"
///     name = "p"
///     default = "allow"
///     [[rule]]
///     id = "injection"
///     action = "block"
///     message = "prompt injection"
///     [rule.match]
///     prompt_contains = ["ignore previous instructions"]
/// "#)?;
/// let body = json!({"messages": [{"role": "user", "content": "Ignore previous instructions!"}]});
/// let req = RequestView {
///     provider: "openai",
///     method: "POST",
///     path: "/v1/chat/completions",
///     body: Some(&body),
///     ..Default::default()
/// };
/// let decision = evaluate(&policy, &req, &req.extract());
/// assert_eq!(decision.action, Action::Block);
/// assert_eq!(decision.rule_id.as_deref(), Some("injection"));
/// assert!(!decision.shadow);
/// # Ok::<(), latchkey_policy::rules::PolicyError>(())
/// ```
pub fn evaluate(policy: &CompiledPolicy, req: &RequestView<'_>, ex: &Extracted) -> Decision {
    let shadow = policy.source.mode == Mode::Shadow;
    let mut scan = Scan::default();
    let path = req.path.split(['?', '#']).next().unwrap_or_default();
    for rule in &policy.rules {
        if rule_matches(policy, rule, req, path, ex, &mut scan) {
            return Decision {
                action: rule.action,
                rule_id: Some(rule.id.clone()),
                message: rule.message.clone(),
                shadow,
                route: rule.route.clone(),
                redact: rule.redact.clone(),
            };
        }
    }
    Decision {
        action: policy.source.default,
        rule_id: None,
        message: policy.source.default_message.clone(),
        shadow,
        route: None,
        redact: None,
    }
}

/// Lazily computed results of the policy-wide text matchers: `None` = not run yet.
#[derive(Default)]
struct Scan {
    any: [Option<bool>; FIELDS],
}

/// The texts a field is matched against.
fn texts(ex: &Extracted, field: usize) -> &[String] {
    if field == PROMPT_CONTAINS || field == PROMPT_REGEX {
        std::slice::from_ref(&ex.prompt_text)
    } else {
        &ex.tool_args
    }
}

fn any_text_matches(re: &regex::Regex, texts: &[String]) -> bool {
    texts.iter().any(|t| re.is_match(t))
}

fn any_glob(globs: &[Glob], value: &str) -> bool {
    globs.is_empty() || globs.iter().any(|g| g.is_match(value))
}

fn opt_glob(globs: &Option<Vec<Glob>>, value: Option<&str>) -> bool {
    match (globs, value) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(g), Some(v)) => g.iter().any(|g| g.is_match(v)),
    }
}

fn pairs_match(wanted: &[(String, Glob)], have: &[(&str, &str)]) -> bool {
    wanted.iter().all(|(name, glob)| {
        have.iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && glob.is_match(v))
    })
}

fn rule_matches(
    policy: &CompiledPolicy,
    rule: &CompiledRule,
    req: &RequestView<'_>,
    path: &str,
    ex: &Extracted,
    scan: &mut Scan,
) -> bool {
    let cheap = any_glob(&rule.providers, req.provider)
        && any_glob(&rule.methods, req.method)
        && any_glob(&rule.paths, path)
        && opt_glob(&rule.models, req.model)
        && opt_glob(&rule.workloads, req.workload)
        && any_glob(&rule.key_ids, req.key.id)
        && any_glob(&rule.key_names, req.key.name)
        && pairs_match(&rule.key_labels, req.key.labels)
        && pairs_match(&rule.headers, req.headers)
        && (rule.tools.is_empty()
            || ex
                .tool_names
                .iter()
                .any(|n| rule.tools.iter().any(|g| g.is_match(n))));
    if !cheap {
        return false;
    }
    for (field, matcher) in rule.text.iter().enumerate() {
        let Some(matcher) = matcher else { continue };
        let texts = texts(ex, field);
        if let Some(any) = &policy.any_text[field] {
            let hit = *scan.any[field].get_or_insert_with(|| any_text_matches(any, texts));
            if !hit {
                return false;
            }
        }
        if !any_text_matches(matcher, texts) {
            return false;
        }
    }
    true
}
