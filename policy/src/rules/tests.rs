use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::pii::{PiiKind, RedactScope};

fn policy(src: &str) -> CompiledPolicy {
    match Policy::from_toml(src) {
        Ok(p) => p,
        Err(e) => panic!("policy should compile: {e}\n{src}"),
    }
}

fn err(src: &str) -> PolicyError {
    match Policy::from_toml(src) {
        Ok(_) => panic!("policy should be rejected:\n{src}"),
        Err(e) => e,
    }
}

/// A one-rule policy (`id = "r"`, `action = "block"`, default allow) with `[rule.match]` body.
fn one_rule(conditions: &str) -> CompiledPolicy {
    policy(&format!(
        "name = \"t\"\ndefault = \"allow\"\n[[rule]]\nid = \"r\"\naction = \"block\"\n\
         [rule.match]\n{conditions}"
    ))
}

fn chat_req<'a>(body: Option<&'a Value>) -> RequestView<'a> {
    RequestView {
        provider: "openai",
        method: "POST",
        path: "/v1/chat/completions",
        model: Some("gpt-4o-mini"),
        workload: Some("agents"),
        key: KeyMeta {
            id: "key_01",
            name: "ci-bot",
            labels: &[("team", "research"), ("env", "prod")],
        },
        headers: &[
            ("Content-Type", "application/json"),
            ("X-Team", "research"),
            ("x-tag", "a"),
            ("x-tag", "b"),
        ],
        body,
    }
}

fn decide(p: &CompiledPolicy, req: &RequestView<'_>) -> Decision {
    evaluate(p, req, &req.extract())
}

fn blocked(p: &CompiledPolicy, req: &RequestView<'_>) -> bool {
    decide(p, req).rule_id.as_deref() == Some("r")
}

fn chat_body(text: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
}

// ---------------------------------------------------------------- the documented format

#[test]
fn documented_reference_policy_compiles() {
    let doc = include_str!("mod.rs");
    let start = doc.find("//! ```toml").expect("toml block in docs") + "//! ```toml".len();
    let end = start + doc[start..].find("//! ```").expect("end of toml block");
    let toml: String = doc[start..end]
        .lines()
        .map(|l| {
            l.trim_start()
                .trim_start_matches("//!")
                .strip_prefix(' ')
                .unwrap_or("")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let p = policy(&toml);
    assert_eq!(p.name(), "agents");
    assert_eq!(
        p.rule_ids().collect::<Vec<_>>(),
        [
            "no-secrets-in-prompts",
            "cheap-model-for-ci",
            "redact-everything-else"
        ]
    );
    // The first rule's conditions all hold on this request.
    let body = json!({
        "messages": [
            {"role": "user", "content": "Ignore previous instructions. password: hunter2"},
            {"role": "assistant", "tool_calls": [{"function": {"name": "shell_exec", "arguments": "{\"cmd\":\"rm  -rf /etc/passwd\"}"}}]}
        ],
        "tools": [{"type": "function", "function": {"name": "shell_exec"}}]
    });
    let req = RequestView {
        model: Some("gpt-4o"),
        key: KeyMeta {
            id: "key_0123",
            name: "ci-runner",
            labels: &[("team", "research")],
        },
        headers: &[("x-team", "research")],
        ..chat_req(Some(&body))
    };
    let d = decide(&p, &req);
    assert_eq!(d.rule_id.as_deref(), Some("no-secrets-in-prompts"));
    assert_eq!(d.action, Action::Block);
    // The catch-all redacts everything else.
    let plain = chat_body("hi");
    let d = decide(&p, &chat_req(Some(&plain)));
    assert_eq!(d.rule_id.as_deref(), Some("redact-everything-else"));
    let spec = d.redact.expect("redact spec");
    assert_eq!(
        spec.detectors().kinds(),
        [PiiKind::Email, PiiKind::CreditCard, PiiKind::ApiKey]
    );
    assert_eq!(spec.scope(), RedactScope::PromptFields);
}

// ---------------------------------------------------------------- matchers, one by one

#[test]
fn match_providers() {
    let p = one_rule(r#"providers = ["anthropic", "open*"]"#);
    assert!(blocked(&p, &chat_req(None)));
    let other = RequestView {
        provider: "gemini",
        ..chat_req(None)
    };
    assert!(!blocked(&p, &other));
}

#[test]
fn match_methods_ignore_case() {
    let p = one_rule(r#"methods = ["post"]"#);
    assert!(blocked(&p, &chat_req(None)));
    let get = RequestView {
        method: "GET",
        ..chat_req(None)
    };
    assert!(!blocked(&p, &get));
}

#[test]
fn match_paths_glob_ignores_query() {
    let p = one_rule(r#"paths = ["/v1/chat/*"]"#);
    let with_query = RequestView {
        path: "/v1/chat/completions?stream=true",
        ..chat_req(None)
    };
    assert!(blocked(&p, &with_query));
    let embeddings = RequestView {
        path: "/v1/embeddings",
        ..chat_req(None)
    };
    assert!(!blocked(&p, &embeddings));
    // The query string is not part of the path.
    let p = one_rule(r#"paths = ["*stream*"]"#);
    assert!(!blocked(&p, &with_query));
}

#[test]
fn match_models_and_unknown_model() {
    let p = one_rule(r#"models = ["gpt-4o*"]"#);
    assert!(blocked(&p, &chat_req(None)));
    let other = RequestView {
        model: Some("claude-3-5-sonnet"),
        ..chat_req(None)
    };
    assert!(!blocked(&p, &other));
    let unknown = RequestView {
        model: None,
        ..chat_req(None)
    };
    assert!(
        !blocked(&p, &unknown),
        "a models condition never matches an unknown model"
    );
    let p = one_rule(r#"models = ["*"]"#);
    assert!(!blocked(&p, &unknown));
}

#[test]
fn match_workloads() {
    let p = one_rule(r#"workloads = ["agents", "ci"]"#);
    assert!(blocked(&p, &chat_req(None)));
    let none = RequestView {
        workload: None,
        ..chat_req(None)
    };
    assert!(!blocked(&p, &none));
    let prod = RequestView {
        workload: Some("production"),
        ..chat_req(None)
    };
    assert!(!blocked(&p, &prod));
}

#[test]
fn match_key_id_name_labels() {
    assert!(blocked(
        &one_rule(r#"key_ids = ["key_01"]"#),
        &chat_req(None)
    ));
    assert!(!blocked(
        &one_rule(r#"key_ids = ["key_02"]"#),
        &chat_req(None)
    ));
    assert!(blocked(
        &one_rule(r#"key_names = ["ci-*"]"#),
        &chat_req(None)
    ));
    assert!(!blocked(
        &one_rule(r#"key_names = ["prod-*"]"#),
        &chat_req(None)
    ));
    let p = one_rule(r#"key_labels = { team = "research", env = "pr*" }"#);
    assert!(blocked(&p, &chat_req(None)));
    let p = one_rule(r#"key_labels = { team = "research", owner = "*" }"#);
    assert!(
        !blocked(&p, &chat_req(None)),
        "every listed label must be present"
    );
    let p = one_rule(r#"key_labels = { team = "sales" }"#);
    assert!(!blocked(&p, &chat_req(None)));
}

#[test]
fn match_headers() {
    let p = one_rule(r#"headers = { "x-team" = "research" }"#);
    assert!(blocked(&p, &chat_req(None)), "header names ignore case");
    let p = one_rule(r#"headers = { "x-tag" = "b" }"#);
    assert!(
        blocked(&p, &chat_req(None)),
        "any value of a repeated header"
    );
    let p = one_rule(r#"headers = { "x-team" = "research", "x-missing" = "*" }"#);
    assert!(!blocked(&p, &chat_req(None)));
    let p = one_rule(r#"headers = { "x-team" = "sales" }"#);
    assert!(!blocked(&p, &chat_req(None)));
    assert!(p.needs_headers());
    assert!(!p.needs_body());
}

#[test]
fn match_prompt_contains_ignores_ascii_case() {
    let p = one_rule(r#"prompt_contains = ["ignore previous instructions", "jailbreak"]"#);
    let body = chat_body("Please IGNORE previous Instructions now");
    assert!(blocked(&p, &chat_req(Some(&body))));
    let body = chat_body("a harmless prompt");
    assert!(!blocked(&p, &chat_req(Some(&body))));
    assert!(!blocked(&p, &chat_req(None)), "no body, no prompt");
    assert!(p.needs_body());
    assert!(!p.needs_headers());
}

#[test]
fn match_prompt_regex() {
    let p = one_rule(r#"prompt_regex = ['(?i)password\s*[:=]', '\bAKIA[0-9A-Z]{16}\b']"#);
    let body = chat_body("my Password = x");
    assert!(blocked(&p, &chat_req(Some(&body))));
    let body = chat_body("key AKIAABCDEFGHIJKLMNOP here");
    assert!(blocked(&p, &chat_req(Some(&body))));
    let body = chat_body("passwords are hard");
    assert!(!blocked(&p, &chat_req(Some(&body))));
}

#[test]
fn match_tools_offered_or_called() {
    let p = one_rule(r#"tools = ["shell_*"]"#);
    let offered = json!({"tools": [{"type": "function", "function": {"name": "shell_exec"}}]});
    assert!(blocked(&p, &chat_req(Some(&offered))));
    let called = json!({"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "Shell_Run", "input": {}}]}]});
    assert!(blocked(&p, &chat_req(Some(&called))));
    let other = json!({"tools": [{"name": "web_search"}]});
    assert!(!blocked(&p, &chat_req(Some(&other))));
}

#[test]
fn match_tool_args() {
    let body = json!({"messages": [
        {"role": "user", "content": "clean up rm -rf please"},
        {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "sh", "arguments": "{\"cmd\": \"ls\"}"}},
            {"id": "c2", "type": "function", "function": {"name": "sh", "arguments": "{\"cmd\": \"cat /ETC/passwd\"}"}}
        ]}
    ]});
    let p = one_rule(r#"tool_args_contains = ["/etc/passwd"]"#);
    assert!(blocked(&p, &chat_req(Some(&body))));
    let p = one_rule(r#"tool_args_regex = ['rm\s+-rf']"#);
    assert!(
        !blocked(&p, &chat_req(Some(&body))),
        "prompt text is not tool arguments"
    );
    let p = one_rule(r#"tool_args_regex = ['"cmd":\s*"ls"']"#);
    assert!(blocked(&p, &chat_req(Some(&body))));
}

#[test]
fn all_conditions_must_hold() {
    let p = one_rule(
        r#"providers = ["openai"]
           models = ["gpt-4o*"]
           prompt_contains = ["secret"]"#,
    );
    let yes = chat_body("a secret");
    let no = chat_body("nothing here");
    assert!(blocked(&p, &chat_req(Some(&yes))));
    assert!(!blocked(&p, &chat_req(Some(&no))));
    let other_provider = RequestView {
        provider: "anthropic",
        ..chat_req(Some(&yes))
    };
    assert!(!blocked(&p, &other_provider));
}

#[test]
fn policy_wide_matchers_map_hits_to_their_rules() {
    let p = policy(
        r#"name = "t"
        default = "allow"
        [[rule]]
        id = "a"
        action = "block"
        [rule.match]
        prompt_contains = ["alpha", "beta"]
        prompt_regex = ['x\d+']
        [[rule]]
        id = "b"
        action = "warn"
        [rule.match]
        prompt_contains = ["gamma"]
        [[rule]]
        id = "c"
        action = "hold"
        [rule.match]
        prompt_regex = ['y\d+']
        "#,
    );
    let id = |text: &str| {
        let body = chat_body(text);
        decide(&p, &chat_req(Some(&body))).rule_id
    };
    assert_eq!(id("beta x1").as_deref(), Some("a"));
    assert_eq!(
        id("beta y1").as_deref(),
        Some("c"),
        "rule a needs both of its fields"
    );
    assert_eq!(id("gamma y1").as_deref(), Some("b"));
    assert_eq!(id("y22").as_deref(), Some("c"));
    assert_eq!(id("x1"), None);
}

#[test]
fn regex_flags_and_alternations_stay_inside_their_pattern() {
    let p = policy(
        r#"name = "t"
        default = "allow"
        [[rule]]
        id = "a"
        action = "block"
        [rule.match]
        prompt_regex = ['(?i)abc', 'q|r$']
        [[rule]]
        id = "b"
        action = "warn"
        [rule.match]
        prompt_regex = ['xyz']
        "#,
    );
    let id = |text: &str| {
        let body = chat_body(text);
        decide(&p, &chat_req(Some(&body))).rule_id
    };
    assert_eq!(id("ABC").as_deref(), Some("a"));
    assert_eq!(id("xyz").as_deref(), Some("b"));
    assert_eq!(id("XYZ"), None, "(?i) of rule a does not leak into rule b");
    assert_eq!(id("q at start").as_deref(), Some("a"));
    assert_eq!(id("ends with r").as_deref(), Some("a"));
    assert_eq!(id("r not at end"), None);
}

#[test]
fn prompt_contains_folds_unicode_case() {
    let p = one_rule(r#"prompt_contains = ["ÉCRIRE", "a.b"]"#);
    let body = chat_body("je vais écrire");
    assert!(blocked(&p, &chat_req(Some(&body))));
    let body = chat_body("axb");
    assert!(
        !blocked(&p, &chat_req(Some(&body))),
        "substrings are literal, not regexes"
    );
    let body = chat_body("A.B");
    assert!(blocked(&p, &chat_req(Some(&body))));
}

// ---------------------------------------------------------------- actions and ordering

fn action_policy(action: &str, extra: &str) -> CompiledPolicy {
    policy(&format!(
        "name = \"t\"\ndefault = \"allow\"\n[[rule]]\nid = \"r\"\naction = \"{action}\"\n\
         message = \"m\"\n{extra}"
    ))
}

#[test]
fn each_action() {
    let req = chat_req(None);
    for (name, action) in [
        ("allow", Action::Allow),
        ("block", Action::Block),
        ("hold", Action::Hold),
        ("warn", Action::Warn),
    ] {
        let d = decide(&action_policy(name, ""), &req);
        assert_eq!(d.action, action);
        assert_eq!(d.rule_id.as_deref(), Some("r"));
        assert_eq!(d.message.as_deref(), Some("m"));
        assert!(d.route.is_none() && d.redact.is_none());
        assert_eq!(d.enforced_action(), action);
    }

    let d = decide(
        &action_policy(
            "route",
            "[rule.route]\nprovider = \"anthropic\"\nmodel = \"claude\"",
        ),
        &req,
    );
    assert_eq!(d.action, Action::Route);
    assert_eq!(
        d.route,
        Some(Route {
            provider: Some("anthropic".into()),
            model: Some("claude".into())
        })
    );

    let d = decide(&action_policy("redact", ""), &req);
    assert_eq!(d.action, Action::Redact);
    let spec = d.redact.expect("redact spec");
    assert_eq!(
        spec.detectors().kinds(),
        PiiKind::BUILTIN,
        "default: all built-ins"
    );
    let mut body = chat_body("mail me at jo@example.org");
    let found = spec.apply(&mut body);
    assert_eq!(found.len(), 1);
    assert_eq!(
        body["messages"][0]["content"],
        "mail me at [REDACTED:EMAIL]"
    );

    let d = decide(
        &action_policy(
            "redact",
            "[rule.redact]\ndetectors = []\ncustom = ['ACME-\\d{6}']\nscope = \"all_strings\"",
        ),
        &req,
    );
    let spec = d.redact.expect("redact spec");
    assert!(spec.detectors().kinds().is_empty());
    assert_eq!(spec.scope(), RedactScope::AllStrings);
    let mut body = json!({"anything": ["ACME-123456"]});
    assert_eq!(spec.apply(&mut body)[0].kind, PiiKind::Custom);
    assert_eq!(body, json!({"anything": ["[REDACTED:CUSTOM]"]}));
}

#[test]
fn first_match_wins_and_default() {
    let p = policy(
        r#"name = "t"
        default = "block"
        default_message = "not allowed by default"
        [[rule]]
        id = "warn-research"
        action = "warn"
        [rule.match]
        key_labels = { team = "research" }
        [[rule]]
        id = "allow-openai"
        action = "allow"
        [rule.match]
        providers = ["openai"]
        "#,
    );
    let d = decide(&p, &chat_req(None));
    assert_eq!(
        d.rule_id.as_deref(),
        Some("warn-research"),
        "both match; the first wins"
    );
    let no_labels = RequestView {
        key: KeyMeta::default(),
        ..chat_req(None)
    };
    assert_eq!(
        decide(&p, &no_labels).rule_id.as_deref(),
        Some("allow-openai")
    );
    let neither = RequestView {
        provider: "gemini",
        ..no_labels
    };
    let d = decide(&p, &neither);
    assert!(d.is_default());
    assert_eq!(d.action, Action::Block);
    assert_eq!(d.message.as_deref(), Some("not allowed by default"));
    assert_eq!(d.to_string(), "block by default: not allowed by default");
}

#[test]
fn no_rules_means_default() {
    let p = policy("name = \"t\"\ndefault = \"hold\"");
    let d = decide(&p, &chat_req(None));
    assert_eq!((d.action, d.rule_id), (Action::Hold, None));
    assert!(!p.needs_body() && !p.needs_headers());
}

#[test]
fn catch_all_rule_without_match() {
    let p = policy(
        "name = \"t\"\ndefault = \"allow\"\n[[rule]]\nid = \"all\"\naction = \"route\"\n\
         [rule.route]\nmodel = \"small\"",
    );
    let d = decide(&p, &RequestView::default());
    assert_eq!(d.rule_id.as_deref(), Some("all"));
    assert_eq!(
        d.to_string(),
        "route by rule all to (same provider) / small"
    );
}

#[test]
fn shadow_mode_flags_but_does_not_enforce() {
    let p = policy(
        "name = \"t\"\nmode = \"shadow\"\ndefault = \"allow\"\n[[rule]]\nid = \"r\"\n\
         action = \"block\"\nmessage = \"no\"",
    );
    assert_eq!(p.mode(), Mode::Shadow);
    let d = decide(&p, &chat_req(None));
    assert_eq!(d.action, Action::Block);
    assert!(d.shadow);
    assert_eq!(d.enforced_action(), Action::Allow);
    assert_eq!(d.to_string(), "block by rule r: no (shadow: not enforced)");

    let enforce = action_policy("block", "");
    let d = decide(&enforce, &chat_req(None));
    assert!(!d.shadow);
    assert_eq!(d.enforced_action(), Action::Block);
}

#[test]
fn decision_serializes_for_audit_and_cli() {
    let p = action_policy(
        "redact",
        "[rule.redact]\ndetectors = [\"email\"]\ncustom = ['X\\d']",
    );
    let d = decide(&p, &chat_req(None));
    let v = serde_json::to_value(&d).expect("serializable");
    assert_eq!(v["action"], "redact");
    assert_eq!(v["rule_id"], "r");
    assert_eq!(v["shadow"], false);
    assert_eq!(v["redact"]["detectors"], json!(["email"]));
    assert_eq!(v["redact"]["custom"], json!(["X\\d"]));
    assert_eq!(v["redact"]["scope"], "prompt_fields");
    assert_eq!(d.to_string(), "redact by rule r [email, custom]: m");
}

// ---------------------------------------------------------------- validation errors

const HEAD: &str = "name = \"t\"\ndefault = \"allow\"\n";

#[test]
fn unknown_fields_are_named() {
    let e = err(&format!("{HEAD}colour = \"red\"")).to_string();
    assert!(e.contains("unknown field `colour`"), "{e}");

    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"block\"\nmesage = \"x\""
    ))
    .to_string();
    assert!(e.contains("unknown field `mesage`"), "{e}");

    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"block\"\n[rule.match]\nprovider = [\"openai\"]"
    ))
    .to_string();
    assert!(e.contains("unknown field `provider`"), "{e}");
    assert!(e.contains("providers"), "suggests the valid names: {e}");

    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"route\"\n[rule.route]\nprovider = \"a\"\nregion = \"eu\""
    ))
    .to_string();
    assert!(e.contains("unknown field `region`"), "{e}");
}

#[test]
fn missing_and_mistyped_fields() {
    let e = err("name = \"t\"").to_string();
    assert!(e.contains("missing field `default`"), "{e}");
    let e = err("name = \"t\"\ndefault = \"deny\"").to_string();
    assert!(e.contains("unknown variant `deny`"), "{e}");
    let e = err(&format!("{HEAD}mode = \"dry-run\"")).to_string();
    assert!(e.contains("unknown variant `dry-run`"), "{e}");
    let e = err(&format!("{HEAD}[[rule]]\nid = \"r\"")).to_string();
    assert!(e.contains("missing field `action`"), "{e}");
    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"block\"\n[rule.match]\nproviders = \"openai\""
    ))
    .to_string();
    assert!(e.contains("invalid type"), "{e}");
    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"redact\"\n[rule.redact]\ndetectors = [\"passport\"]"
    ))
    .to_string();
    assert!(e.contains("unknown variant `passport`"), "{e}");
    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"redact\"\n[rule.redact]\ndetectors = [\"custom\"]"
    ))
    .to_string();
    assert!(e.contains("unknown variant `custom`"), "{e}");
}

#[test]
fn bad_regex_names_rule_field_and_pattern() {
    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"ok\"\naction = \"block\"\n[rule.match]\nprompt_regex = ['fine']\n\
         [[rule]]\nid = \"broken\"\naction = \"block\"\n[rule.match]\nprompt_regex = ['(unclosed']"
    ));
    match &e {
        PolicyError::InvalidRegex {
            rule,
            field,
            pattern,
            ..
        } => {
            assert_eq!(
                (rule.as_str(), *field, pattern.as_str()),
                ("broken", "prompt_regex", "(unclosed")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.to_string().contains("rule `broken`"));

    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"big\"\naction = \"block\"\n[rule.match]\nprompt_regex = ['\\w{{1000}}{{1000}}']"
    ));
    assert!(
        matches!(&e, PolicyError::InvalidRegex { rule, .. } if rule == "big"),
        "size limits are reported per pattern: {e:?}"
    );

    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"t\"\naction = \"block\"\n[rule.match]\ntool_args_regex = ['[z-a]']"
    ));
    assert!(
        matches!(&e, PolicyError::InvalidRegex { rule, field: "tool_args_regex", .. } if rule == "t"),
        "{e:?}"
    );
}

#[test]
fn action_tables_are_checked() {
    let e = err(&format!("{HEAD}[[rule]]\nid = \"r\"\naction = \"route\""));
    assert_eq!(e, PolicyError::MissingRoute { rule: "r".into() });
    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"route\"\n[rule.route]\nmodel = \" \""
    ));
    assert_eq!(e, PolicyError::EmptyRoute { rule: "r".into() });
    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"block\"\n[rule.route]\nmodel = \"m\""
    ));
    assert_eq!(
        e,
        PolicyError::UnexpectedTable {
            rule: "r".into(),
            table: "route"
        }
    );
    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"warn\"\n[rule.redact]\ndetectors = [\"email\"]"
    ));
    assert_eq!(
        e,
        PolicyError::UnexpectedTable {
            rule: "r".into(),
            table: "redact"
        }
    );
    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"redact\"\n[rule.redact]\ndetectors = []"
    ));
    assert_eq!(e, PolicyError::EmptyRedact { rule: "r".into() });
    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"redact\"\n[rule.redact]\ncustom = ['a(']"
    ));
    assert!(
        matches!(&e, PolicyError::InvalidRedactPattern { rule, pattern, .. } if rule == "r" && pattern == "a("),
        "{e:?}"
    );
    let e = err(&format!(
        "{HEAD}[[rule]]\nid = \"r\"\naction = \"redact\"\n[rule.redact]\ncustom = ['']"
    ));
    assert!(
        matches!(e, PolicyError::InvalidRedactPattern { .. }),
        "{e:?}"
    );
}

#[test]
fn structural_errors() {
    assert_eq!(
        err("name = \" \"\ndefault = \"allow\""),
        PolicyError::EmptyName
    );
    assert_eq!(
        err("name = \"t\"\ndefault = \"redact\""),
        PolicyError::InvalidDefault {
            action: Action::Redact
        }
    );
    assert!(matches!(
        err("name = \"t\"\ndefault = \"route\""),
        PolicyError::InvalidDefault { .. }
    ));
    assert_eq!(
        err(&format!("{HEAD}[[rule]]\nid = \"\"\naction = \"block\"")),
        PolicyError::EmptyRuleId { index: 1 }
    );
    assert_eq!(
        err(&format!(
            "{HEAD}[[rule]]\nid = \"a\"\naction = \"block\"\n[[rule]]\nid = \"a\"\naction = \"warn\""
        )),
        PolicyError::DuplicateRuleId { id: "a".into() }
    );
    assert_eq!(
        err(&format!(
            "{HEAD}[[rule]]\nid = \"r\"\naction = \"block\"\n[rule.match]\nmodels = []"
        )),
        PolicyError::EmptyCondition {
            rule: "r".into(),
            field: "models"
        }
    );
    assert_eq!(
        err(&format!(
            "{HEAD}[[rule]]\nid = \"r\"\naction = \"block\"\n[rule.match]\nheaders = {{}}"
        )),
        PolicyError::EmptyCondition {
            rule: "r".into(),
            field: "headers"
        }
    );
    assert_eq!(
        err(&format!(
            "{HEAD}[[rule]]\nid = \"r\"\naction = \"block\"\n[rule.match]\nprompt_contains = [\"x\", \"\"]"
        )),
        PolicyError::EmptyPattern {
            rule: "r".into(),
            field: "prompt_contains"
        }
    );
    let e = err("name = ");
    assert!(matches!(e, PolicyError::Parse(_)));
}

// ---------------------------------------------------------------- versions, sharing, JSON

#[test]
fn fingerprint_and_generation() {
    let src = "name = \"t\"\ndefault = \"allow\"\n[[rule]]\nid = \"r\"\naction = \"block\"\n[rule.match]\nmodels = [\"a\"]";
    let a = policy(src);
    let b = policy(&format!("# a comment\n{src}\n"));
    assert_eq!(
        a.fingerprint(),
        b.fingerprint(),
        "formatting does not change the version"
    );
    assert_eq!(a.fingerprint().len(), 64);
    assert_ne!(a.generation(), b.generation());
    let c = policy(&src.replace("\"a\"", "\"b\""));
    assert_ne!(a.fingerprint(), c.fingerprint());

    let json = serde_json::to_string(a.source()).expect("json");
    let from_json = Policy::parse_json(&json)
        .and_then(Policy::compile)
        .expect("JSON form compiles");
    assert_eq!(from_json.fingerprint(), a.fingerprint());
    let toml = a.source().to_toml().expect("toml");
    assert_eq!(policy(&toml).fingerprint(), a.fingerprint());
    assert!(a
        .to_string()
        .starts_with("t (enforce, 1 rules, default allow, "));
}

#[test]
fn compiled_policy_is_send_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<CompiledPolicy>();
    check::<Decision>();
    check::<std::sync::Arc<CompiledPolicy>>();
}

// ---------------------------------------------------------------- extraction per shape

fn ex(body: Value) -> Extracted {
    Extracted::from_body(Some(&body))
}

#[test]
fn extract_openai_chat() {
    let e = ex(json!({
        "model": "gpt-4o",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "name": "bob", "content": [
                {"type": "text", "text": "Describe"},
                {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": {}}}],
        "functions": [{"name": "legacy_fn"}]
    }));
    assert_eq!(e.prompt_text, "You are terse.\nDescribe\nsunny");
    let mut names = e.tool_names.clone();
    names.sort();
    assert_eq!(names, ["get_weather", "legacy_fn"]);
    assert_eq!(e.tool_args, ["{\"city\":\"Paris\"}"]);
}

#[test]
fn extract_openai_responses_and_completions() {
    let e = ex(json!({"model": "gpt-4.1", "instructions": "Be kind.", "input": "Hello"}));
    assert_eq!(e.prompt_text, "Be kind.\nHello");
    let e = ex(json!({
        "instructions": "sys",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "q1"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a1"}]},
            {"type": "function_call", "call_id": "f1", "name": "lookup", "arguments": "{\"id\":7}"},
            {"type": "function_call_output", "call_id": "f1", "output": "found it"}
        ],
        "tools": [{"type": "function", "name": "lookup", "parameters": {}}]
    }));
    assert_eq!(e.prompt_text, "sys\nq1\na1\nfound it");
    assert_eq!(e.tool_names, ["lookup"]);
    assert_eq!(e.tool_args, ["{\"id\":7}"]);
    let e = ex(json!({"model": "text-embedding-3-small", "input": ["one", "two", 3]}));
    assert_eq!(e.prompt_text, "one\ntwo");
    let e = ex(json!({"model": "gpt-3.5-turbo-instruct", "prompt": "complete me"}));
    assert_eq!(e.prompt_text, "complete me");
}

#[test]
fn extract_anthropic_messages() {
    let e = ex(json!({
        "model": "claude-3-5-sonnet-latest",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "You are Claude.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "List files"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Running ls"},
                {"type": "tool_use", "id": "tu1", "name": "bash", "input": {"command": "ls -la"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "tu1", "content": [{"type": "text", "text": "a.txt"}]},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0"}}
            ]}
        ],
        "tools": [{"name": "bash", "description": "run", "input_schema": {"type": "object"}}]
    }));
    assert_eq!(
        e.prompt_text,
        "You are Claude.\nList files\nRunning ls\na.txt"
    );
    assert_eq!(e.tool_names, ["bash"]);
    assert_eq!(e.tool_args, ["{\"command\":\"ls -la\"}"]);
    let e = ex(
        json!({"system": "plain system", "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "x", "content": "string result"}]}]}),
    );
    assert_eq!(e.prompt_text, "plain system\nstring result");
}

#[test]
fn extract_gemini() {
    let e = ex(json!({
        "systemInstruction": {"parts": [{"text": "Be factual."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"forecast": "rain"}}}]}
        ],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {}}]}],
        "generationConfig": {"temperature": 0.1}
    }));
    assert_eq!(e.prompt_text, "Be factual.\nWeather?\nrain");
    assert_eq!(e.tool_names, ["get_weather"]);
    assert_eq!(e.tool_args, ["{\"city\":\"Rome\"}"]);
    let e = ex(json!({"system_instruction": {"parts": [{"text": "snake"}]},
        "tools": [{"function_declarations": [{"name": "f"}]}]}));
    assert_eq!(
        (e.prompt_text.as_str(), e.tool_names.as_slice()),
        ("snake", &["f".to_string()][..])
    );
}

#[test]
fn extract_bedrock_converse_and_invoke() {
    let e = ex(json!({
        "system": [{"text": "Sys prompt"}],
        "messages": [
            {"role": "user", "content": [{"text": "Hi"}, {"image": {"format": "png", "source": {"bytes": "AAA"}}}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "search", "input": {"q": "rust"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "r1"}, {"json": {"hits": ["r2"]}}]}}]}
        ],
        "toolConfig": {"tools": [{"toolSpec": {"name": "search", "inputSchema": {"json": {"type": "object", "description": "not prompt"}}}}]},
        "inferenceConfig": {"maxTokens": 10}
    }));
    assert_eq!(e.prompt_text, "Sys prompt\nHi\nr1\nr2");
    assert_eq!(e.tool_names, ["search"]);
    assert_eq!(e.tool_args, ["{\"q\":\"rust\"}"]);

    // Bedrock invoke with an Anthropic body.
    let e = ex(json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "system": "S",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "U"}]}]
    }));
    assert_eq!(e.prompt_text, "S\nU");
    // Other Bedrock models.
    assert_eq!(ex(json!({"inputText": "titan"})).prompt_text, "titan");
}

#[test]
fn extract_odd_bodies() {
    assert_eq!(Extracted::from_body(None), Extracted::default());
    assert_eq!(ex(json!([1, 2])), Extracted::default());
    assert_eq!(ex(json!("just a string")), Extracted::default());
    assert_eq!(
        ex(json!({"messages": "not an array", "tools": {"x": 1}})),
        Extracted::default()
    );
    // Deep nesting is bounded, not a stack overflow.
    let mut deep = json!("deep");
    for _ in 0..500 {
        deep = json!({"content": [deep]});
    }
    let e = ex(json!({"messages": [deep]}));
    assert!(e.prompt_text.is_empty());
}

// ---------------------------------------------------------------- sample requests

#[test]
fn sample_request_json_and_toml() {
    let p = policy(
        r#"name = "t"
        default = "allow"
        [[rule]]
        id = "team-gpt4o"
        action = "warn"
        message = "expensive"
        [rule.match]
        models = ["gpt-4o"]
        headers = { "x-team" = "research" }
        key_labels = { env = "prod" }
        "#,
    );
    let s = SampleRequest::parse(
        r#"{"provider": "openai", "path": "/v1/chat/completions",
            "key": {"id": "k", "name": "n", "labels": {"env": "prod"}},
            "headers": {"X-Team": "research"},
            "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}}"#,
    )
    .expect("json sample");
    assert_eq!(s.method, "POST");
    assert_eq!(
        s.evaluate(&p).to_string(),
        "warn by rule team-gpt4o: expensive"
    );

    let s = SampleRequest::parse(
        r#"provider = "openai"
        path = "/v1/chat/completions"
        headers = { "x-team" = "research" }
        [key]
        labels = { env = "prod" }
        [body]
        model = "gpt-4o"
        "#,
    )
    .expect("toml sample");
    assert_eq!(s.evaluate(&p).rule_id.as_deref(), Some("team-gpt4o"));

    let e = SampleRequest::parse(r#"{"provider": "x", "path": "/", "bdy": {}}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `bdy`"), "{e}");
}

// ---------------------------------------------------------------- properties

/// Arbitrary JSON biased toward the field names the walker looks at.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("messages"),
        Just("content"),
        Just("text"),
        Just("type"),
        Just("tool_use"),
        Just("tool_result"),
        Just("input"),
        Just("name"),
        Just("tools"),
        Just("function"),
        Just("arguments"),
        Just("tool_calls"),
        Just("system"),
        Just("contents"),
        Just("parts"),
        Just("functionCall"),
        Just("args"),
        Just("functionResponse"),
        Just("response"),
        Just("toolUse"),
        Just("toolResult"),
        Just("json"),
        Just("toolConfig"),
        Just("toolSpec"),
        Just("functionDeclarations"),
        Just("output"),
        Just("function_call"),
        Just("function_call_output"),
        Just("systemInstruction"),
        Just("prompt"),
        Just("x"),
    ]
    .prop_map(str::to_owned);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("tool_use".to_owned()),
            Just("function_call".to_owned()),
            Just("function_call_output".to_owned()),
            Just("{\"a\": [1, \"b\"]}".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// The policy used by the property test, compiled once.
fn fuzz_policy() -> &'static CompiledPolicy {
    static P: std::sync::OnceLock<CompiledPolicy> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        policy(
            r#"name = "t"
            default = "allow"
            [[rule]]
            id = "a"
            action = "block"
            [rule.match]
            prompt_contains = ["x", "tool_use"]
            tool_args_regex = ['\d']
            [[rule]]
            id = "b"
            action = "warn"
            [rule.match]
            tools = ["*a*"]
            paths = ["/v1/*x*"]
            headers = { "h" = "*é*" }
            [[rule]]
            id = "c"
            action = "redact"
            [rule.match]
            prompt_regex = ['(?i)^.{3,}$']
            "#,
        )
    })
}

proptest! {
    #[test]
    fn evaluate_never_panics(body in arb_json(), path in ".{0,20}", header in ".{0,8}") {
        let p = fuzz_policy();
        let headers = [("h", header.as_str())];
        let req = RequestView { path: &path, headers: &headers, ..chat_req(Some(&body)) };
        let extracted = req.extract();
        let d = evaluate(p, &req, &extracted);
        if let Some(spec) = d.redact {
            let mut b = body.clone();
            spec.apply(&mut b);
            prop_assert!(serde_json::to_string(&b).is_ok());
        }
    }
}
