use std::path::PathBuf;

use super::*;
use crate::store::StoreTarget;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spec/fixtures/valid");

fn valid_files() -> Vec<(PathBuf, String)> {
    [
        "switchyard.yaml",
        "flows/offers-to-storefront.yaml",
        "tests/offers-to-storefront.yaml",
        "contracts/offer.json",
    ]
    .into_iter()
    .map(|path| {
        let text = std::fs::read_to_string(Path::new(FIXTURE).join(path)).unwrap_or_default();
        (PathBuf::from(path), text)
    })
    .collect()
}

fn env() -> LoadOptions {
    LoadOptions {
        strict: false,
        env: EnvLookup::empty()
            .with("MARKETPLACE_URL", "http://m")
            .with("MARKETPLACE_CLIENT_ID", "test-client")
            .with("MARKETPLACE_CLIENT_SECRET", "test-secret")
            .with("STOREFRONT_URL", "http://s")
            .with("ALERTS_URL", "http://a"),
    }
}

fn diagnose(workspace: &str) -> Vec<String> {
    let mut files = valid_files();
    files[0].1 = workspace.to_owned();
    load_sources(Path::new("."), &files, &env())
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}:{}:{}: {} {} {:?}",
                d.file.display(),
                d.line,
                d.column,
                d.code,
                d.message,
                d.hint
            )
        })
        .collect()
}

#[test]
fn valid_workspace_resolves() {
    let loaded = load_sources(Path::new("/ws"), &valid_files(), &env());
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let workspace = loaded.workspace.unwrap_or_else(|| panic!("no workspace"));
    assert_eq!(
        workspace.state,
        StoreTarget::Sqlite("/ws/.switchyard/state.db".into())
    );
    assert_eq!(
        workspace.systems["marketplace"].connectors["http"]["base_url"].as_str(),
        Some("http://m")
    );
    let flow = &workspace.flows["offers-to-storefront"];
    // The flow's ends are resolved: connector, expanded system settings and its own keys.
    assert_eq!(flow.from.connector.name(), "http");
    assert_eq!(flow.from.system_settings["base_url"], "http://m");
    assert_eq!(
        flow.trigger,
        crate::spec::model::Trigger::Poll(std::time::Duration::from_secs(30))
    );
    assert_eq!(flow.retry.initial, std::time::Duration::from_secs(1));
    assert_eq!(flow.freshness, Some(std::time::Duration::from_secs(900)));
    assert_eq!(flow.failures.len(), 6);
    assert_eq!(
        flow.failures[&crate::spec::model::FailureMode::ContractViolation].owner,
        "seller-support"
    );
    assert_eq!(
        flow.failures[&crate::spec::model::FailureMode::MappingError].owner,
        "marketplace-ops"
    );
    assert_eq!(workspace.tests.len(), 1);
    assert!(workspace.contracts.contains_key("offer"));
}

#[test]
fn the_model_owns_resolved_and_compiled_values() {
    let mut files = valid_files();
    files[0].1 = files[0].1.replace(
        "model: operator\n",
        "model: operator\nstate: { max_dead_letter_record_size: 2KiB }\n",
    );
    files[1].1 = files[1].1.replace(
        "trigger: { poll: 30s }",
        "trigger: { cron: \"30 9 * * *\", timezone: Europe/Paris }",
    );
    let loaded = load_sources(Path::new("/ws"), &files, &env());
    let workspace = loaded
        .workspace
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    let flow = &workspace.flows["offers-to-storefront"];
    let crate::spec::model::Trigger::Cron(cron) = &flow.trigger else {
        panic!("{:?}", flow.trigger);
    };
    // Parsed and resolved at load; the daemon only asks for the next firing time.
    assert_eq!(cron.expression, "0 30 9 * * *");
    assert_eq!(cron.tz.iana_name(), Some("Europe/Paris"));
    assert_eq!(cron.schedule.to_string(), "0 30 9 * * *");
    assert_eq!(workspace.max_dead_letter_record, 2048);
    let plan = &flow.plan;
    assert_eq!(plan.max_dead_letter_record, 2048);
    assert_eq!(plan.name, "offers-to-storefront");
    // The flow's plan holds the workspace's compiled contract, not a copy of its own.
    assert!(std::sync::Arc::ptr_eq(
        &plan.contract,
        &workspace.contracts["offer"]
    ));
}

#[test]
fn yaml_errors_become_diagnostics() {
    let base = valid_files()[0].1.clone();
    let duplicate = base.replace("name: demo marketplace", "name: a\nname: b");
    let unknown = base.replace("name: demo marketplace", "nmae: a");
    let wrong_type = base.replace("version: 1", "version: one");
    let syntax = base.replace("model: operator", "model: [operator");
    for (text, code) in [
        (duplicate, "E0003"),
        (unknown, "E0004"),
        (wrong_type, "E0005"),
        (syntax, "E0002"),
    ] {
        let found = diagnose(&text);
        eprintln!("{found:#?}");
        assert!(found.iter().any(|d| d.contains(code)), "{code}: {found:#?}");
    }
}

/// Truncated and garbled versions of valid files must produce diagnostics, never a panic.
#[test]
fn never_panics_on_garbled_input() {
    let files = valid_files();
    for index in 0..files.len() {
        let text = files[index].1.clone();
        let chars: Vec<char> = text.chars().collect();
        let mut variants = Vec::new();
        for cut in (0..chars.len()).step_by(7) {
            variants.push(chars[..cut].iter().collect::<String>());
            let mut garbled = chars.clone();
            garbled[cut] = ['{', '[', ':', '\'', '"', '&', '*', '\t', '\n', '-'][cut % 10];
            variants.push(garbled.into_iter().collect());
        }
        variants.push("a: &a [*a, *a]\nb: *a".to_owned());
        variants.push("[".repeat(500));
        variants.push("- ".repeat(500));
        for variant in variants {
            let mut broken = files.clone();
            broken[index].1 = variant;
            let _ = check_sources(&broken);
        }
    }
}

#[test]
fn billion_laughs_is_refused() {
    let mut text =
        String::from("version: 1\nmodel: operator\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let prev = level - 1;
        text.push_str(&format!(
            "a{level}: &a{level} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let found = diagnose(&text);
    assert!(!found.is_empty());
}

#[test]
fn sizes_are_checked_where_they_are_written() {
    let base = valid_files()[0].1.clone();
    let text = base
        .replace(
            "base_url: \"${MARKETPLACE_URL}\" }",
            "base_url: \"${MARKETPLACE_URL}\", max_response_size: lots }",
        )
        .replace(
            "model: operator\n",
            "model: operator\nstate: { max_dead_letter_record_size: 0KiB }\n",
        );
    let found = diagnose(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("switchyard.yaml:4:39: E0005 size \"0KiB\" is zero"));
    assert!(
        found[1].starts_with("switchyard.yaml:6:97: E0005 invalid size \"lots\""),
        "{found:#?}"
    );
}

#[test]
fn contract_paths_stay_inside_the_workspace_in_memory_too() {
    for path in ["../offer.json", "/etc/passwd", "contracts/../../x.json"] {
        let found = diagnose(&valid_files()[0].1.replace("contracts/offer.json", path));
        assert!(
            found.iter().any(|d| d.contains("E0604")),
            "{path}: {found:#?}"
        );
    }
}

/// The workspace's `state:` with `env` set, resolved.
fn state_of(state: &str, env: &[(&str, &str)]) -> Result<StoreTarget, Vec<String>> {
    let mut files = valid_files();
    files[0].1 = files[0]
        .1
        .replace("model: operator\n", &format!("model: operator\n{state}\n"));
    let mut options = self::env();
    for (name, value) in env {
        options.env = options.env.with(*name, *value);
    }
    let loaded = load_sources(Path::new("/ws"), &files, &options);
    loaded.workspace.map(|w| w.state).ok_or_else(|| {
        loaded
            .diagnostics
            .iter()
            .map(|d| format!("{}:{}: {} {}", d.line, d.column, d.code, d.message))
            .collect()
    })
}

#[test]
fn state_names_a_store_by_url_with_env_expanded() {
    assert_eq!(
        state_of("state: sqlite:var/state.db", &[]),
        Ok(StoreTarget::Sqlite("/ws/var/state.db".into()))
    );
    assert_eq!(
        state_of(
            "state: postgres://app:${PGPASS}@db/ledger?schema=sy",
            &[("PGPASS", "pw")]
        ),
        Ok(StoreTarget::Postgres(
            "postgres://app:pw@db/ledger?schema=sy".into()
        ))
    );
    assert_eq!(
        state_of(
            "state: { url: \"${STATE_URL}\", max_dead_letter_record_size: 1MiB }",
            &[("STATE_URL", "postgresql://db/x")]
        ),
        Ok(StoreTarget::Postgres("postgresql://db/x".into()))
    );
    // The older spelling keeps working.
    assert_eq!(
        state_of("state: { sqlite: old/state.db }", &[]),
        Ok(StoreTarget::Sqlite("/ws/old/state.db".into()))
    );
}

#[test]
fn state_errors_name_the_line_the_variable_and_the_accepted_forms() {
    let found = state_of("state: postgres://app:${PGPASS}@db/ledger", &[]).unwrap_err();
    assert_eq!(
        found,
        ["4:23: E0701 environment variable PGPASS is not set; the state store URL needs it"]
    );
    let found = state_of("state: mysql://db/app", &[]).unwrap_err();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("4:8: E0005 state store: unknown store `mysql:`; use `sqlite:PATH`"),
        "{found:#?}"
    );
    let found = state_of("state:\n  url: postgres://db:port/app", &[]).unwrap_err();
    assert!(
        found[0].starts_with("5:8: E0005 state store: not a PostgreSQL URL"),
        "{found:#?}"
    );
    let found = state_of("state: state.db", &[]).unwrap_err();
    assert!(
        found[0].contains("no store scheme; use `sqlite:PATH`"),
        "{found:#?}"
    );
    let found = state_of("state: { url: sqlite:a.db, sqlite: b.db }", &[]).unwrap_err();
    assert!(
        found[0].contains("give `url` or `sqlite`, not both"),
        "{found:#?}"
    );
    let found = state_of("state: { path: a.db }", &[]).unwrap_err();
    assert!(found[0].contains("E0004"), "{found:#?}");
}

/// The valid workspace with its flow file edited by `edit`.
fn diagnose_flow(edit: impl Fn(&str) -> String) -> Vec<String> {
    let mut files = valid_files();
    files[1].1 = edit(&files[1].1);
    load_sources(Path::new("."), &files, &env())
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}:{}: {} {} {:?}",
                d.line, d.column, d.code, d.message, d.hint
            )
        })
        .collect()
}

#[test]
fn a_typo_in_from_is_reported_by_the_connector_at_its_key() {
    let found = diagnose_flow(|flow| flow.replace("  records: /offers", "  recods: /offers"));
    assert_eq!(
        found,
        ["10:3: E0004 unknown field \"recods\" Some(\"did you mean \\\"records\\\"?\")"]
    );
    // A key of the other connector is as unknown to this one.
    let found = diagnose_flow(|flow| flow.replace("  records: /offers", "  path: in.jsonl"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("10:3: E0004 unknown field \"path\""),
        "{found:#?}"
    );
    // Nested keys are found at their own place, and the generic keys stay known.
    let found = diagnose_flow(|flow| flow.replace("method: PUT, path:", "method: PUT, pth:"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("15:27: E0004 unknown field \"pth\""),
        "{found:#?}"
    );
    assert!(found[0].contains("did you mean \\\"path\\\""), "{found:#?}");
    let found = diagnose_flow(|flow| flow.replace("  cursor: updated_at", "  autor: /by"));
    assert!(
        found[0].contains("did you mean \\\"author\\\""),
        "{found:#?}"
    );
}

#[test]
fn connector_values_and_templates_are_checked_at_their_place() {
    let found = diagnose_flow(|flow| flow.replace("size: 100 }", "size: many }"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("11:70: E0005 invalid type"),
        "{found:#?}"
    );
    // Templates the connector declares are checked against what they render over.
    let found = diagnose_flow(|flow| flow.replace("/catalog/offers/{{sku}}", "/c/{{skew}}"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("E0303 template uses field \"skew\""),
        "{found:#?}"
    );
}

#[test]
fn system_connector_keys_come_from_the_registry() {
    let base = valid_files()[0].1.clone();
    let found = diagnose(&base.replace("storefront: { http: {", "storefront: { htp: {"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("switchyard.yaml:6:17: E0004 unknown connector \"htp\" under system \"storefront\" Some(\"did you mean \\\"http\\\"?\")"),
        "{found:#?}"
    );
    let found = diagnose(&base.replace("storefront: { http: {", "storefront: { queue: {"));
    assert!(found[0].contains("connectors: http, file"), "{found:#?}");
    let found = diagnose(&base.replace(
        "{ base_url: \"${STOREFRONT_URL}\" }",
        "{ base_url: \"${STOREFRONT_URL}\", timeout: soon }",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("switchyard.yaml:6:65: E0403"),
        "{found:#?}"
    );
}

#[test]
fn a_plain_scalar_is_a_string_where_the_connector_wants_one() {
    // YAML reads `2` as a number; as a header value it is the text "2", as it always was.
    let base = valid_files()[0].1.clone();
    let found = diagnose(&base.replace(
        "{ base_url: \"${STOREFRONT_URL}\" }",
        "{ base_url: \"${STOREFRONT_URL}\", headers: { X-Api-Version: 2 }, concurrency: 4 }",
    ));
    assert!(found.is_empty(), "{found:#?}");
    // A number where a number is wanted is still checked as one.
    let found = diagnose(&base.replace(
        "{ base_url: \"${STOREFRONT_URL}\" }",
        "{ base_url: \"${STOREFRONT_URL}\", concurrency: many }",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("E0005 invalid type: string \"many\""),
        "{found:#?}"
    );
}

#[test]
fn a_section_without_its_system_is_reported() {
    let found = diagnose_flow(|flow| flow.replacen("  system: marketplace\n", "", 1));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("E0005 missing field `system`"),
        "{found:#?}"
    );
}
