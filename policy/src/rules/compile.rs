//! Validation and one-time compilation of a [`Policy`] into a [`CompiledPolicy`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use regex::Regex;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::format::{Action, Match, Mode, Policy, Route};
use super::glob::Glob;
use crate::pii::{redact_json, Detectors, Finding, PiiKind, RedactScope};

/// A policy that cannot be used, with what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The document is not valid TOML/JSON, or has an unknown, missing or mistyped field
    /// (the message names the field and, for TOML, the line).
    #[error("invalid policy document: {0}")]
    Parse(String),
    /// `name` is empty.
    #[error("policy `name` is empty")]
    EmptyName,
    /// The default action needs a rule's table (`redact`, `route`).
    #[error(
        "`default = \"{action}\"` is not allowed: the default must be allow, block, warn or \
         hold (end the rules with a catch-all rule to redact or route by default)"
    )]
    InvalidDefault {
        /// The action given.
        action: Action,
    },
    /// A rule has an empty `id`.
    #[error("rule #{index} has an empty `id`")]
    EmptyRuleId {
        /// Position of the rule (1-based).
        index: usize,
    },
    /// Two rules share an `id`.
    #[error("duplicate rule id `{id}`")]
    DuplicateRuleId {
        /// The repeated id.
        id: String,
    },
    /// A condition list is present but empty.
    #[error("rule `{rule}`: `match.{field}` is empty; omit the field to match any value")]
    EmptyCondition {
        /// The rule's id.
        rule: String,
        /// The condition field.
        field: &'static str,
    },
    /// A substring or regex condition contains an empty pattern (it would match everything).
    #[error("rule `{rule}`: `match.{field}` contains an empty pattern")]
    EmptyPattern {
        /// The rule's id.
        rule: String,
        /// The condition field.
        field: &'static str,
    },
    /// A regex does not compile.
    #[error("rule `{rule}`: invalid regex `{pattern}` in `match.{field}`: {error}")]
    InvalidRegex {
        /// The rule's id.
        rule: String,
        /// The condition field.
        field: &'static str,
        /// The pattern as written.
        pattern: String,
        /// The regex compiler's explanation.
        error: String,
    },
    /// A rule's patterns of one field are individually valid but too large together.
    #[error("rule `{rule}`: the `match.{field}` patterns are too large together: {error}")]
    PatternsTooLarge {
        /// The rule's id.
        rule: String,
        /// The condition field.
        field: &'static str,
        /// The compiler's explanation.
        error: String,
    },
    /// `action = "route"` without a `[rule.route]` table.
    #[error("rule `{rule}`: `action = \"route\"` needs a [rule.route] table")]
    MissingRoute {
        /// The rule's id.
        rule: String,
    },
    /// A `[rule.route]` table names neither a provider nor a model.
    #[error("rule `{rule}`: [rule.route] needs `provider`, `model` or both")]
    EmptyRoute {
        /// The rule's id.
        rule: String,
    },
    /// A `[rule.route]` / `[rule.redact]` table on a rule with another action.
    #[error("rule `{rule}`: [rule.{table}] is only allowed with `action = \"{table}\"`")]
    UnexpectedTable {
        /// The rule's id.
        rule: String,
        /// `route` or `redact`.
        table: &'static str,
    },
    /// A `[rule.redact]` table that enables nothing.
    #[error("rule `{rule}`: [rule.redact] enables no detector and no custom pattern")]
    EmptyRedact {
        /// The rule's id.
        rule: String,
    },
    /// A custom redaction pattern does not compile.
    #[error("rule `{rule}`: invalid custom redaction pattern `{pattern}`: {error}")]
    InvalidRedactPattern {
        /// The rule's id.
        rule: String,
        /// The pattern as written (empty when the pattern is empty).
        pattern: String,
        /// The explanation.
        error: String,
    },
}

/// Compiled redaction settings of a `redact` rule, shared (cheap to clone).
#[derive(Debug, Clone)]
pub struct RedactSpec {
    detectors: Arc<Detectors>,
    scope: RedactScope,
}

impl RedactSpec {
    /// The compiled detectors.
    pub fn detectors(&self) -> &Detectors {
        &self.detectors
    }

    /// Which fields are rewritten.
    pub fn scope(&self) -> RedactScope {
        self.scope
    }

    /// Redacts `body` in place ([`redact_json`] with this spec's detectors and scope).
    pub fn apply(&self, body: &mut serde_json::Value) -> Vec<Finding> {
        redact_json(body, &self.detectors, self.scope)
    }
}

impl Serialize for RedactSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("RedactSpec", 3)?;
        st.serialize_field("detectors", self.detectors.kinds())?;
        st.serialize_field("custom", self.detectors.custom_patterns())?;
        st.serialize_field("scope", &self.scope)?;
        st.end()
    }
}

/// A rule with every pattern compiled.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) id: String,
    pub(crate) action: Action,
    pub(crate) message: Option<String>,
    pub(crate) route: Option<Route>,
    pub(crate) redact: Option<RedactSpec>,
    /// Empty = no condition.
    pub(crate) providers: Vec<Glob>,
    pub(crate) methods: Vec<Glob>,
    pub(crate) paths: Vec<Glob>,
    /// `None` = no condition (a present condition never matches an absent value).
    pub(crate) models: Option<Vec<Glob>>,
    pub(crate) workloads: Option<Vec<Glob>>,
    pub(crate) key_ids: Vec<Glob>,
    pub(crate) key_names: Vec<Glob>,
    pub(crate) key_labels: Vec<(String, Glob)>,
    pub(crate) headers: Vec<(String, Glob)>,
    pub(crate) tools: Vec<Glob>,
    /// Text conditions, one matcher per field (`None` = no condition).
    pub(crate) text: [Option<Regex>; FIELDS],
}

/// The four text fields, indexing [`CompiledRule::text`] and [`CompiledPolicy::any_text`].
pub(crate) const PROMPT_CONTAINS: usize = 0;
/// See [`PROMPT_CONTAINS`].
pub(crate) const PROMPT_REGEX: usize = 1;
/// See [`PROMPT_CONTAINS`].
pub(crate) const ARGS_CONTAINS: usize = 2;
/// See [`PROMPT_CONTAINS`].
pub(crate) const ARGS_REGEX: usize = 3;
pub(crate) const FIELDS: usize = 4;
const FIELD_NAMES: [&str; FIELDS] = [
    "prompt_contains",
    "prompt_regex",
    "tool_args_contains",
    "tool_args_regex",
];

/// A validated policy with every pattern compiled once. `Send + Sync`: share it behind an
/// [`Arc`] and swap the `Arc` when the policy changes.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub(crate) source: Policy,
    pub(crate) fingerprint: String,
    pub(crate) generation: u64,
    pub(crate) rules: Vec<CompiledRule>,
    /// Per text field, when two or more rules use it: one matcher for all their patterns.
    /// If it finds nothing (the common case), no rule's own matcher needs to run, so a
    /// request costs one scan per field however many rules there are.
    pub(crate) any_text: [Option<Regex>; FIELDS],
    pub(crate) needs_body: bool,
    pub(crate) needs_headers: bool,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Policy {
    /// Parses TOML and compiles it (see the [format reference](super)).
    ///
    /// ```
    /// use latchkey_policy::rules::{Action, Policy};
    ///
    /// let policy = Policy::from_toml(r#"
    ///     name = "agents"
    ///     default = "allow"
    ///     [[rule]]
    ///     id = "no-shell"
    ///     action = "block"
    ///     [rule.match]
    ///     tools = ["shell_*"]
    /// "#)?;
    /// assert_eq!(policy.name(), "agents");
    /// assert_eq!(policy.default_action(), Action::Allow);
    ///
    /// let err = Policy::from_toml("name = \"x\"\ndefault = \"allow\"\ncolour = \"red\"").unwrap_err();
    /// assert!(err.to_string().contains("unknown field `colour`"));
    /// # Ok::<(), latchkey_policy::rules::PolicyError>(())
    /// ```
    pub fn from_toml(src: &str) -> Result<CompiledPolicy, PolicyError> {
        Self::parse_toml(src)?.compile()
    }

    /// Parses TOML into the document, without validating or compiling it.
    pub fn parse_toml(src: &str) -> Result<Policy, PolicyError> {
        toml::from_str(src).map_err(|e| PolicyError::Parse(e.to_string()))
    }

    /// Parses JSON (same field names as TOML, `rule` being an array) into the document.
    pub fn parse_json(src: &str) -> Result<Policy, PolicyError> {
        serde_json::from_str(src).map_err(|e| PolicyError::Parse(e.to_string()))
    }

    /// Renders the document as TOML.
    pub fn to_toml(&self) -> Result<String, PolicyError> {
        toml::to_string(self).map_err(|e| PolicyError::Parse(e.to_string()))
    }

    /// Validates the document and compiles every pattern.
    pub fn compile(self) -> Result<CompiledPolicy, PolicyError> {
        Compiler::default().run(self)
    }
}

/// One text field's patterns across all rules, as regex sources (substrings escaped).
#[derive(Default)]
struct Collected {
    /// Each contributing rule's alternation, in rule order.
    sources: Vec<String>,
}

/// Joins regex sources into one alternation, each in its own group so flags stay scoped.
fn alternation<'s>(sources: impl IntoIterator<Item = &'s str>) -> String {
    let mut out = String::new();
    for (i, src) in sources.into_iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        out.push_str("(?:");
        out.push_str(src);
        out.push(')');
    }
    out
}

impl Collected {
    /// Validates and compiles one rule's list for field `f`; `None` when absent.
    fn add(
        &mut self,
        rule: &str,
        f: usize,
        list: Option<&Vec<String>>,
    ) -> Result<Option<Regex>, PolicyError> {
        let field = FIELD_NAMES[f];
        let Some(list) = list else { return Ok(None) };
        non_empty_list(rule, field, list)?;
        if list.iter().any(String::is_empty) {
            return Err(PolicyError::EmptyPattern {
                rule: rule.to_owned(),
                field,
            });
        }
        let source = if f == PROMPT_CONTAINS || f == ARGS_CONTAINS {
            // Substrings: escaped literals, case-insensitive. The regex engine runs these
            // through its Aho-Corasick/Teddy literal searchers.
            let escaped: Vec<String> = list.iter().map(|p| regex::escape(p)).collect();
            format!("(?i){}", alternation(escaped.iter().map(String::as_str)))
        } else {
            // Each pattern must be valid on its own (so one cannot unbalance the alternation)
            // and an error names it.
            let mut single = None;
            for p in list {
                match Regex::new(p) {
                    Ok(re) => single = Some(re),
                    Err(e) => {
                        return Err(PolicyError::InvalidRegex {
                            rule: rule.to_owned(),
                            field,
                            pattern: p.clone(),
                            error: e.to_string(),
                        })
                    }
                }
            }
            if let (1, Some(re)) = (list.len(), single) {
                self.sources.push(list[0].clone());
                return Ok(Some(re));
            }
            alternation(list.iter().map(String::as_str))
        };
        let regex = Regex::new(&source).map_err(|e| PolicyError::PatternsTooLarge {
            rule: rule.to_owned(),
            field,
            error: e.to_string(),
        })?;
        self.sources.push(source);
        Ok(Some(regex))
    }

    /// The policy-wide matcher, worth having only when two or more rules use the field. It is
    /// only a shortcut: if the combination exceeds the regex size limit, evaluation simply
    /// runs each rule's own matcher.
    fn any(&self) -> Option<Regex> {
        if self.sources.len() < 2 {
            return None;
        }
        Regex::new(&alternation(self.sources.iter().map(String::as_str))).ok()
    }
}

fn non_empty_list<T>(rule: &str, field: &'static str, list: &[T]) -> Result<(), PolicyError> {
    if list.is_empty() {
        return Err(PolicyError::EmptyCondition {
            rule: rule.to_owned(),
            field,
        });
    }
    Ok(())
}

fn globs(
    rule: &str,
    field: &'static str,
    list: Option<&Vec<String>>,
) -> Result<Vec<Glob>, PolicyError> {
    match list {
        None => Ok(Vec::new()),
        Some(list) => {
            non_empty_list(rule, field, list)?;
            Ok(list.iter().map(|p| Glob::new(p)).collect())
        }
    }
}

fn glob_map(
    rule: &str,
    field: &'static str,
    map: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<Vec<(String, Glob)>, PolicyError> {
    match map {
        None => Ok(Vec::new()),
        Some(map) => {
            if map.is_empty() {
                return Err(PolicyError::EmptyCondition {
                    rule: rule.to_owned(),
                    field,
                });
            }
            Ok(map.iter().map(|(k, v)| (k.clone(), Glob::new(v))).collect())
        }
    }
}

#[derive(Default)]
struct Compiler {
    text: [Collected; FIELDS],
}

impl Compiler {
    fn run(mut self, policy: Policy) -> Result<CompiledPolicy, PolicyError> {
        if policy.name.trim().is_empty() {
            return Err(PolicyError::EmptyName);
        }
        if matches!(policy.default, Action::Redact | Action::Route) {
            return Err(PolicyError::InvalidDefault {
                action: policy.default,
            });
        }
        let mut rules = Vec::with_capacity(policy.rules.len());
        let mut needs_body = false;
        let mut needs_headers = false;
        for (i, rule) in policy.rules.iter().enumerate() {
            if rule.id.trim().is_empty() {
                return Err(PolicyError::EmptyRuleId { index: i + 1 });
            }
            if policy.rules[..i].iter().any(|r| r.id == rule.id) {
                return Err(PolicyError::DuplicateRuleId {
                    id: rule.id.clone(),
                });
            }
            let compiled = self.rule(rule)?;
            // The model is usually in the body (OpenAI, Anthropic), and a route to another
            // model rewrites it there.
            needs_body |= compiled.action == Action::Redact
                || !compiled.tools.is_empty()
                || compiled.text.iter().any(Option::is_some)
                || compiled.models.is_some()
                || compiled.route.as_ref().is_some_and(|r| r.model.is_some());
            needs_headers |= !compiled.headers.is_empty();
            rules.push(compiled);
        }
        let any_text = self.text.each_ref().map(Collected::any);
        let fingerprint = {
            let canonical = serde_json::to_vec(&policy).unwrap_or_default();
            hex::encode(Sha256::digest(&canonical))
        };
        Ok(CompiledPolicy {
            source: policy,
            fingerprint,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            rules,
            any_text,
            needs_body,
            needs_headers,
        })
    }

    fn rule(&mut self, rule: &super::format::Rule) -> Result<CompiledRule, PolicyError> {
        let id = rule.id.as_str();
        let m: &Match = &rule.conditions;
        let route = match (rule.action, &rule.route) {
            (Action::Route, None) => {
                return Err(PolicyError::MissingRoute {
                    rule: id.to_owned(),
                })
            }
            (Action::Route, Some(r)) => {
                let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
                if blank(&r.provider) && blank(&r.model) {
                    return Err(PolicyError::EmptyRoute {
                        rule: id.to_owned(),
                    });
                }
                Some(r.clone())
            }
            (_, Some(_)) => {
                return Err(PolicyError::UnexpectedTable {
                    rule: id.to_owned(),
                    table: "route",
                })
            }
            (_, None) => None,
        };
        let redact = match (rule.action, &rule.redact) {
            (Action::Redact, cfg) => {
                let cfg = cfg.clone().unwrap_or_default();
                if cfg.detectors.is_empty() && cfg.custom.is_empty() {
                    return Err(PolicyError::EmptyRedact {
                        rule: id.to_owned(),
                    });
                }
                let kinds: Vec<PiiKind> = cfg.detectors.clone();
                let detectors = Detectors::new(&kinds, &cfg.custom).map_err(|e| match e {
                    crate::pii::PiiError::InvalidPattern { pattern, error } => {
                        PolicyError::InvalidRedactPattern {
                            rule: id.to_owned(),
                            pattern,
                            error,
                        }
                    }
                    crate::pii::PiiError::EmptyPattern => PolicyError::InvalidRedactPattern {
                        rule: id.to_owned(),
                        pattern: String::new(),
                        error: "empty pattern".to_owned(),
                    },
                })?;
                Some(RedactSpec {
                    detectors: Arc::new(detectors),
                    scope: cfg.scope,
                })
            }
            (_, Some(_)) => {
                return Err(PolicyError::UnexpectedTable {
                    rule: id.to_owned(),
                    table: "redact",
                })
            }
            (_, None) => None,
        };
        Ok(CompiledRule {
            id: id.to_owned(),
            action: rule.action,
            message: rule.message.clone(),
            route,
            redact,
            providers: globs(id, "providers", m.providers.as_ref())?,
            methods: globs(id, "methods", m.methods.as_ref())?,
            paths: globs(id, "paths", m.paths.as_ref())?,
            models: match &m.models {
                None => None,
                Some(l) => Some(globs(id, "models", Some(l))?),
            },
            workloads: match &m.workloads {
                None => None,
                Some(l) => Some(globs(id, "workloads", Some(l))?),
            },
            key_ids: globs(id, "key_ids", m.key_ids.as_ref())?,
            key_names: globs(id, "key_names", m.key_names.as_ref())?,
            key_labels: glob_map(id, "key_labels", m.key_labels.as_ref())?,
            headers: glob_map(id, "headers", m.headers.as_ref())?,
            tools: globs(id, "tools", m.tools.as_ref())?,
            text: [
                self.text[PROMPT_CONTAINS].add(id, PROMPT_CONTAINS, m.prompt_contains.as_ref())?,
                self.text[PROMPT_REGEX].add(id, PROMPT_REGEX, m.prompt_regex.as_ref())?,
                self.text[ARGS_CONTAINS].add(id, ARGS_CONTAINS, m.tool_args_contains.as_ref())?,
                self.text[ARGS_REGEX].add(id, ARGS_REGEX, m.tool_args_regex.as_ref())?,
            ],
        })
    }
}

impl CompiledPolicy {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.source.name
    }

    /// `enforce` or `shadow`.
    pub fn mode(&self) -> Mode {
        self.source.mode
    }

    /// The action when no rule matches.
    pub fn default_action(&self) -> Action {
        self.source.default
    }

    /// The document this was compiled from.
    pub fn source(&self) -> &Policy {
        &self.source
    }

    /// Rule ids, in evaluation order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// SHA-256 (hex) of the canonical JSON form of the document: the same policy has the same
    /// fingerprint on every node, whether it was written in TOML or JSON. Audit events record
    /// it as the policy version.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A process-wide counter, different for every compilation: a cheap key for caches that
    /// must notice a recompiled policy.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether any rule reads the body (prompt, tool and model conditions) or may rewrite it
    /// (`redact`, `route` to another model).
    /// When false the gateway need not buffer or parse the body for this policy.
    pub fn needs_body(&self) -> bool {
        self.needs_body
    }

    /// Whether any rule has a `headers` condition. When false, [`RequestView::headers`] may
    /// be left empty.
    ///
    /// [`RequestView::headers`]: super::RequestView::headers
    pub fn needs_headers(&self) -> bool {
        self.needs_headers
    }
}

impl fmt::Display for CompiledPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fp = self.fingerprint.get(..12).unwrap_or(&self.fingerprint);
        write!(
            f,
            "{} ({}, {} rules, default {}, {fp})",
            self.name(),
            match self.mode() {
                Mode::Enforce => "enforce",
                Mode::Shadow => "shadow",
            },
            self.rules.len(),
            self.default_action()
        )
    }
}
