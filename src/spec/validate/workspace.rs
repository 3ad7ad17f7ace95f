//! Checks of `switchyard.yaml`: version, systems, owners, objects, their contracts, defaults and
//! `${ENV}` references.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use super::{At, Input, Report, seg};
use crate::connectors::{self, DynConnector, Problem};
use crate::contract::document::{self, ContractRef};
use crate::spec::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::spec::env;
use crate::spec::load::{FileError, MAX_FILE_BYTES};
use crate::spec::model::RetryPolicy;
use crate::spec::raw::{RetryConfig, SystemConfig, WorkspaceFile};
use crate::store::{ACCEPTED_FORMS, StoreTarget};

/// What flow checks need to know about the workspace file.
pub(crate) struct Checked {
    /// The workspace file as written.
    pub(crate) spec: WorkspaceFile,
    /// The workspace file with `${ENV}` references expanded.
    pub(crate) expanded: WorkspaceFile,
    /// Each object's contract, when it was read and is a valid JSON Schema.
    pub(crate) contracts: IndexMap<String, Option<Value>>,
    /// The state store, when `state:` names a valid one (or names none: the default).
    pub(crate) state: Option<StoreTarget>,
}

impl Checked {
    /// The top-level property names of an object's contract, if it declares them; `None`
    /// means field checks are skipped (no contract, or an open one).
    pub(crate) fn properties(&self, object: &str) -> Option<Vec<String>> {
        let contract = self.contracts.get(object)?.as_ref()?;
        properties(contract)
    }

    /// How messages name an object's contract: `contract FILE`, or `contract` when the object
    /// is unknown.
    pub(crate) fn contract_label(&self, object: &str) -> String {
        self.spec
            .objects
            .get(object)
            .map(|object| format!("contract {}", object.contract))
            .unwrap_or_else(|| "contract".to_owned())
    }
}

/// Checks the workspace file.
pub(crate) fn check(
    spec: &WorkspaceFile,
    at: &At<'_>,
    input: &Input<'_>,
    report: &mut Report<'_>,
) -> Checked {
    if spec.version != 1 {
        report.push(
            at.error(
                "/version",
                Code::UnsupportedVersion,
                format!("unsupported spec version {}", spec.version),
            )
            .with_hint(Some("the only version so far is 1".into())),
        );
    }
    let systems: Vec<&str> = spec.systems.keys().map(String::as_str).collect();
    let owners: Vec<&str> = spec.owners.keys().map(String::as_str).collect();

    for (name, system) in &spec.systems {
        check_connector_sections(name, system, at, input, report);
    }
    if let Some(size) = spec
        .state
        .as_ref()
        .and_then(|state| state.max_dead_letter_record_size.as_ref())
    {
        check_size("/state/max_dead_letter_record_size", size, at, report);
    }

    if let Some(rates) = &spec.exchange_rates {
        super::money::check_rate_table(rates, at, report);
    }

    if let Some(defaults) = &spec.defaults {
        if let Some(owner) = &defaults.failure_owner {
            check_owner(owner, "/defaults/failure_owner", &owners, at, report);
        }
        if let Some(retry) = &defaults.retry {
            check_retry(retry, "/defaults/retry", at, report);
        }
    }

    let mut contracts = IndexMap::new();
    for (name, object) in &spec.objects {
        let base = format!("/objects/{}", seg(name));
        check_system(
            &object.source_of_truth,
            &format!("{base}/source_of_truth"),
            &systems,
            at,
            report,
        );
        for (list_name, list) in [
            ("create", &object.create),
            ("update", &object.update),
            ("consume", &object.consume),
        ] {
            for (index, system) in list.iter().enumerate() {
                check_system(
                    system,
                    &format!("{base}/{list_name}/{index}"),
                    &systems,
                    at,
                    report,
                );
            }
        }
        let contract = read_contract(
            &object.contract,
            &format!("{base}/contract"),
            at,
            input,
            report,
        );
        if let Some(properties) = contract.as_ref().and_then(properties) {
            for (index, key) in object.key.iter().enumerate() {
                if !properties.contains(key) {
                    report.push(
                        at.error(
                            &format!("{base}/key/{index}"),
                            Code::KeyNotInContract,
                            format!(
                                "key field \"{key}\" is not a property of contract {}",
                                object.contract
                            ),
                        )
                        .with_hint(did_you_mean(key, properties.iter().map(String::as_str))),
                    );
                }
            }
        }
        contracts.insert(name.clone(), contract);
    }

    let expanded = expand_env(spec, at, input, report);
    let state = check_state(spec, at, input, report);
    Checked {
        spec: spec.clone(),
        expanded,
        contracts,
        state,
    }
}

/// Resolves `state:` (`url`, or the older `sqlite` path) to the store it names, reporting
/// what is wrong with it. An unset `${ENV}` here is an error even without `--strict`: an
/// empty host, user or path would open another store (a fresh one: every record sent again)
/// instead of failing.
fn check_state(
    spec: &WorkspaceFile,
    at: &At<'_>,
    input: &Input<'_>,
    report: &mut Report<'_>,
) -> Option<StoreTarget> {
    let default = || {
        Some(StoreTarget::Sqlite(
            input.root.join(".switchyard").join("state.db"),
        ))
    };
    let Some(state) = &spec.state else {
        return default();
    };
    let (text, pointer) = match (&state.url, &state.sqlite) {
        (Some(_), Some(_)) => {
            report.push(
                at.key_error(
                    "/state/sqlite",
                    Code::InvalidValue,
                    "give `url` or `sqlite`, not both",
                )
                .with_hint(Some(
                    "`url: sqlite:PATH` says the same as `sqlite: PATH`".into(),
                )),
            );
            return None;
        }
        (None, Some(path)) => (format!("sqlite:{path}"), "/state/sqlite"),
        // The shorthand `state: URL` has no `/state/url` node.
        (Some(url), None) if at.map.get("/state/url").is_some() => (url.clone(), "/state/url"),
        (Some(url), None) => (url.clone(), "/state"),
        (None, None) => return default(),
    };
    let (expanded, unset) = env::expand(&text, &input.options.env);
    for (offset, name) in &unset {
        let (line, column) = crate::mapping::syntax::line_column(&text, *offset);
        report.push(
            Diagnostic::error(
                at.file,
                at.map.inside(pointer, (line, column)),
                Code::UnsetEnvStrict,
                format!("environment variable {name} is not set; the state store URL needs it"),
            )
            .with_hint(Some(format!("export {name} before running"))),
        );
    }
    if !unset.is_empty() {
        return None;
    }
    match StoreTarget::parse(&expanded, input.root, false) {
        Ok(target) => Some(target),
        Err(err) => {
            let message = match err {
                crate::store::StoreError::BadTarget { message, .. } => message,
                other => other.to_string(),
            };
            // Most messages name the accepted forms already; the others get them as a hint.
            let hint = (!message.contains(ACCEPTED_FORMS))
                .then(|| format!("accepted forms: {ACCEPTED_FORMS}"));
            report.push(
                at.error(
                    pointer,
                    Code::InvalidValue,
                    format!("state store: {message}"),
                )
                .with_hint(hint),
            );
            None
        }
    }
}

/// Checks a system's connector keys against the registry (exactly one, and known), then its
/// settings through that connector.
fn check_connector_sections(
    name: &str,
    system: &SystemConfig,
    at: &At<'_>,
    input: &Input<'_>,
    report: &mut Report<'_>,
) {
    let base = format!("/systems/{}", seg(name));
    let names: Vec<&str> = connectors::registry().iter().map(|c| c.name()).collect();
    let mut known = 0;
    let mut unknown = 0;
    for key in system.connectors.keys() {
        if connectors::connector(key).is_some() {
            known += 1;
        } else {
            unknown += 1;
            let hint = did_you_mean(key, names.iter().copied())
                .unwrap_or_else(|| format!("connectors: {}", names.join(", ")));
            report.push(
                at.key_error(
                    &format!("{base}/{}", seg(key)),
                    Code::UnknownField,
                    format!("unknown connector \"{key}\" under system \"{name}\""),
                )
                .with_hint(Some(hint)),
            );
        }
    }
    if known > 1 || (known == 0 && unknown == 0) {
        let message = if known == 0 {
            format!("system \"{name}\" has no connector section")
        } else {
            format!("system \"{name}\" has more than one connector section")
        };
        let names: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
        report.push(
            at.key_error(&base, Code::ConnectorSections, message)
                .with_hint(Some(format!("give exactly one of {}", names.join(", ")))),
        );
    }
    if let Some((key, settings)) = system.connector()
        && let Some(connector) = connectors::connector(key)
    {
        let base = format!("{base}/{}", seg(key));
        for problem in connector.check_system(settings) {
            report.push(problem_diagnostic(&problem, &base, &[], at));
        }
        for (pointer, var) in connector.secret_vars(settings) {
            if !input.options.env.is_offline()
                && input
                    .options
                    .env
                    .get(&var)
                    .is_none_or(|value| value.is_empty())
            {
                report.push(
                    at.error(
                        &format!("{base}{pointer}"),
                        Code::UnsetSecret,
                        format!("environment variable {var} is not set (a credential of system \"{name}\")"),
                    )
                    .with_hint(Some(format!(
                        "export {var} before running: without it every request would be refused"
                    ))),
                );
            }
        }
    }
}

/// A connector's problem as a diagnostic at `base` + its pointer. `generic` names the keys the
/// section has besides the connector's, so an unknown key's hint can offer them too.
pub(crate) fn problem_diagnostic(
    problem: &Problem,
    base: &str,
    generic: &[&str],
    at: &At<'_>,
) -> Diagnostic {
    let pointer = format!("{base}{}", problem.pointer);
    if problem.code == Code::UnknownField {
        let mut message = problem.message.clone();
        // Only the section's own level has the generic keys.
        if problem.pointer.matches('/').count() == 1 && !generic.is_empty() {
            let generic: Vec<String> = generic.iter().map(|key| format!("`{key}`")).collect();
            if message.contains("expected") {
                message = format!("{message}, {}", generic.join(", "));
            } else {
                message = format!("{message}, expected one of {}", generic.join(", "));
            }
        }
        let (message, hint) = crate::spec::load::unknown_field(&message);
        return at
            .key_error(&pointer, Code::UnknownField, message)
            .with_hint(hint);
    }
    let diagnostic = if problem.at_key {
        at.key_error(&pointer, problem.code, problem.message.clone())
    } else {
        at.error(&pointer, problem.code, problem.message.clone())
    };
    diagnostic.with_hint(problem.hint.clone())
}

/// The connector of a declared system and its expanded settings, when it has exactly one
/// known connector key (otherwise the workspace checks reported it).
pub(crate) fn connector_of<'a>(
    checked: &'a Checked,
    system: &str,
) -> Option<(&'static dyn DynConnector, &'a Value)> {
    let (key, settings) = checked.expanded.systems.get(system)?.connector()?;
    Some((connectors::connector(key)?, settings))
}

/// Reports a size that does not parse.
fn check_size(pointer: &str, text: &str, at: &At<'_>, report: &mut Report<'_>) {
    if let Err(err) = crate::spec::size::parse_size(text) {
        report.push(
            at.error(pointer, Code::InvalidValue, err.to_string())
                .with_hint(Some("sizes look like 64MiB, 512KiB, 1GiB or 10MB".into())),
        );
    }
}

/// Reports an unknown system reference.
pub(crate) fn check_system(
    name: &str,
    pointer: &str,
    systems: &[&str],
    at: &At<'_>,
    report: &mut Report<'_>,
) -> bool {
    if systems.contains(&name) {
        return true;
    }
    report.push(
        at.error(
            pointer,
            Code::UnknownSystem,
            format!("unknown system \"{name}\""),
        )
        .with_hint(did_you_mean(name, systems.iter().copied())),
    );
    false
}

/// Reports an unknown owner reference.
pub(crate) fn check_owner(
    name: &str,
    pointer: &str,
    owners: &[&str],
    at: &At<'_>,
    report: &mut Report<'_>,
) {
    if !owners.contains(&name) {
        report.push(
            at.error(
                pointer,
                Code::UnknownOwner,
                format!("unknown owner \"{name}\""),
            )
            .with_hint(did_you_mean(name, owners.iter().copied())),
        );
    }
}

/// Checks a retry block's durations, and that its window is not shorter than its first delay.
pub(crate) fn check_retry(retry: &RetryConfig, base: &str, at: &At<'_>, report: &mut Report<'_>) {
    let mut parse = |field: &str, text: &Option<String>| {
        text.as_ref()
            .and_then(|text| at.duration(&format!("{base}/{field}"), text, report))
    };
    let initial = parse("initial", &retry.initial);
    let _ = parse("max_delay", &retry.max_delay);
    let window = parse("window", &retry.window);
    let defaults = RetryPolicy::default();
    let (initial_value, window_value) = (
        initial.unwrap_or(defaults.initial),
        window.unwrap_or(defaults.window),
    );
    let given = (retry.initial.is_none() || initial.is_some())
        && (retry.window.is_none() || window.is_some());
    if given && window_value < initial_value {
        let pointer = if retry.window.is_some() {
            "window"
        } else {
            "initial"
        };
        report.push(at.error(
            &format!("{base}/{pointer}"),
            Code::RetryWindowTooShort,
            format!(
                "retry window {:?} is shorter than the first retry delay {:?}: no retry would ever run",
                window_value, initial_value
            ),
        ));
    }
}

/// Resolves a retry policy field by field: the flow's, else the workspace default's, else the
/// built-in default. Invalid durations were reported already and fall through.
pub(crate) fn resolve_retry(
    flow: Option<&RetryConfig>,
    defaults: Option<&RetryConfig>,
) -> RetryPolicy {
    let builtin = RetryPolicy::default();
    let pick = |get: fn(&RetryConfig) -> &Option<String>, fallback| {
        [flow, defaults]
            .into_iter()
            .flatten()
            .find_map(|retry| get(retry).as_deref())
            .and_then(|text| crate::spec::duration::parse_duration(text).ok())
            .unwrap_or(fallback)
    };
    let backoff = [flow, defaults]
        .into_iter()
        .flatten()
        .find_map(|retry| retry.backoff);
    RetryPolicy {
        exponential: backoff.is_none_or(|b| b == crate::spec::raw::Backoff::Exponential),
        initial: pick(|r| &r.initial, builtin.initial),
        max_delay: pick(|r| &r.max_delay, builtin.max_delay),
        window: pick(|r| &r.window, builtin.window),
    }
}

fn read_contract(
    path: &str,
    pointer: &str,
    at: &At<'_>,
    input: &Input<'_>,
    report: &mut Report<'_>,
) -> Option<Value> {
    let reference = ContractRef::parse(path);
    let path = reference.file;
    let text = match (input.read_contract)(Path::new(path)) {
        Ok(text) => text,
        Err(FileError::Unreadable(_)) => {
            report.push(at.error(
                pointer,
                Code::ContractMissing,
                format!("contract file {path} does not exist or cannot be read"),
            ));
            return None;
        }
        Err(FileError::TooLarge) => {
            report.push(at.error(
                pointer,
                Code::FileUnreadable,
                format!(
                    "contract file {path} is larger than {} MiB (the limit for spec and contract files)",
                    MAX_FILE_BYTES / (1024 * 1024)
                ),
            ));
            return None;
        }
        Err(FileError::Outside) => {
            report.push(
                at.error(
                    pointer,
                    Code::ContractOutsideWorkspace,
                    format!("contract file {path} is outside the workspace folder"),
                )
                .with_hint(Some(
                    "keep contracts inside the workspace (for example under contracts/); paths \
                     are relative to the workspace folder, and symbolic links that lead out of \
                     it are refused"
                        .into(),
                )),
            );
            return None;
        }
    };
    let mut value: Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(err) => {
            report.push(Diagnostic::error(
                PathBuf::from(path),
                (err.line(), err.column()),
                Code::ContractNotJson,
                format!("contract is not valid JSON: {err}"),
            ));
            return None;
        }
    };
    if let Some(selector) = reference.pointer {
        value = match document::select(&value, selector) {
            Ok(schema) => schema,
            Err(err) => {
                let hint = did_you_mean(&err.token, err.candidates.iter().map(String::as_str))
                    .unwrap_or_else(|| {
                        "point at a schema in the document, for example \
                         `#/components/schemas/Order` (OpenAPI 3) or `#/definitions/Order` \
                         (Swagger 2)"
                            .into()
                    });
                report.push(
                    at.error(
                        pointer,
                        Code::ContractInvalidSchema,
                        format!("contract {path}: {err}"),
                    )
                    .with_hint(Some(hint)),
                );
                return None;
            }
        };
    }
    if let Err(err) = jsonschema::meta::validate(&value) {
        report.push(at.error(
            pointer,
            Code::ContractInvalidSchema,
            format!("contract {path} is not a valid JSON Schema: {err}"),
        ));
        return None;
    }
    // The meta-schema does not resolve references; building a validator does.
    if let Err(err) = jsonschema::validator_for(&value) {
        report.push(
            at.error(
                pointer,
                Code::ContractInvalidSchema,
                format!("contract {path} is not a usable JSON Schema: {err}"),
            )
            .with_hint(Some(
                "check the contract's `$ref`s: each must name a schema the same file has \
                 (`#/components/schemas/...` or `#/definitions/...`); copy schemas from other \
                 files into it"
                    .into(),
            )),
        );
        return None;
    }
    Some(value)
}

/// Calls `expand` on every string inside `value`, with its pointer.
fn expand_strings(value: &mut Value, pointer: String, expand: &mut dyn FnMut(&mut String, String)) {
    match value {
        Value::String(text) => expand(text, pointer),
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                expand_strings(item, format!("{pointer}/{index}"), expand);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                expand_strings(item, format!("{pointer}/{}", seg(key)), expand);
            }
        }
        _ => {}
    }
}

/// Whether a pointer is a system's `headers` or `auth` setting, where `${ENV}` carries
/// credentials (`/systems/NAME/CONNECTOR/headers/...`).
fn is_credential_pointer(pointer: &str) -> bool {
    let mut segments = pointer.split('/').skip(1);
    // An OAuth2 token endpoint is an address like `base_url`, not a secret.
    segments.next() == Some("systems")
        && matches!(segments.nth(2), Some("headers" | "auth"))
        && !pointer.ends_with("/token_url")
}

fn properties(contract: &Value) -> Option<Vec<String>> {
    contract
        .get("properties")?
        .as_object()
        .map(|properties| properties.keys().cloned().collect())
}

/// Returns the workspace file with `${ENV}` references expanded, reporting unset variables.
fn expand_env(
    spec: &WorkspaceFile,
    at: &At<'_>,
    input: &Input<'_>,
    report: &mut Report<'_>,
) -> WorkspaceFile {
    let mut expanded = spec.clone();
    // Settings a declared fallback covers (a SQL system's `url` with `fallback:`): an unset
    // variable there is how the fallback is chosen, not a mistake. The text stays unexpanded
    // so the connector sees which variable is missing and can name it when it falls back.
    let optional: std::collections::HashSet<String> = spec
        .systems
        .iter()
        .filter_map(|(name, system)| {
            let (key, settings) = system.connector()?;
            let connector = connectors::connector(key)?;
            let base = format!("/systems/{}/{}", seg(name), seg(key));
            Some(
                connector
                    .optional_settings(settings)
                    .into_iter()
                    .map(move |pointer| format!("{base}{pointer}")),
            )
        })
        .flatten()
        .collect();
    let mut expand = |text: &mut String, pointer: String| {
        let (value, unset) = env::expand(text, &input.options.env);
        if !unset.is_empty() && optional.contains(&pointer) {
            return;
        }
        for (offset, name) in unset {
            let message = format!("environment variable {name} is not set");
            let (line, column) = crate::mapping::syntax::line_column(text, offset);
            let position = at.map.inside(&pointer, (line, column));
            // An unset credential is never a warning: the API would refuse every request,
            // and the refusal would read as an outage.
            // Flow tests call no system, so there it is only what any unset variable is.
            let secret = is_credential_pointer(&pointer) && !input.options.env.is_offline();
            let diagnostic = if secret {
                Diagnostic::error(at.file, position, Code::UnsetSecret, message.clone())
            } else if input.options.strict {
                Diagnostic::error(at.file, position, Code::UnsetEnvStrict, message)
            } else {
                Diagnostic::warning(at.file, position, Code::UnsetEnv, message)
            };
            let hint = if secret {
                format!("export {name} before running: a header without it is refused by the API")
            } else {
                format!("export {name} before running, or it expands to an empty string")
            };
            report.push(diagnostic.with_hint(Some(hint)));
        }
        *text = value;
    };
    // Every string of a system's connector settings may name variables (URLs, headers, a
    // password): the connector reads them expanded.
    for (name, system) in &mut expanded.systems {
        for (key, settings) in &mut system.connectors {
            let base = format!("/systems/{}/{}", seg(name), seg(key));
            expand_strings(settings, base, &mut expand);
        }
    }
    for (name, owner) in &mut expanded.owners {
        if let Some(alert) = &mut owner.alert {
            expand(
                &mut alert.webhook,
                format!("/owners/{}/alert/webhook", seg(name)),
            );
        }
    }
    expanded
}
