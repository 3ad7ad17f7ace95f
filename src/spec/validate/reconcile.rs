//! Checks of a reconcile flow (`reconcile:`): its shape (no `to:`, no `map:`), both sides'
//! systems and connector settings, the pointers, tolerances, date window and rules; and its
//! resolution into a [`Reconciliation`].

use super::flow::{check_failures, check_trigger};
use super::workspace::{Checked, check_system, connector_of, problem_diagnostic};
use super::{At, Report, seg};
use crate::money::Currency;
use crate::reconcile::amount::Amount;
use crate::reconcile::plan::{DateWindow, LineDates, Pair, ReconcilePlan, Rule, Tolerance};
use crate::reconcile::{FieldPair, ReconcileConfig, Reconciliation};
use crate::spec::compiled::Shared;
use crate::spec::diagnostic::{Code, did_you_mean};
use crate::spec::model::{Endpoint, FailureMode, Trigger};
use crate::spec::raw::{FlowFile, SourceConfig};

mod rates;

/// The failure modes a reconciliation produces: each needs an owner.
const POSSIBLE: [FailureMode; 3] = [
    FailureMode::ReconciliationVariance,
    FailureMode::OwnershipViolation,
    FailureMode::SourceUnavailable,
];

/// Whether `spec` is a reconcile flow; reports a flow whose shape fits neither kind.
pub(super) fn is_reconciliation(spec: &FlowFile, at: &At<'_>, report: &mut Report<'_>) -> bool {
    if spec.reconcile.is_none() {
        if spec.to.is_none() {
            report.push(
                at.key_error("/flow", Code::FlowShape, "the flow has no `to:`")
                    .with_hint(Some(
                        "add `to: { system: ..., ... }` naming where records go, or `reconcile:` to reconcile `from:` against a ledger".into(),
                    )),
            );
        }
        return false;
    }
    if spec.to.is_some() {
        report.push(
            at.key_error(
                "/to",
                Code::FlowShape,
                "a reconcile flow has no `to:`: its output is the reconciliation report and its dead letters",
            )
            .with_hint(Some(
                "remove `to:`; `switchyard reconcile WS FLOW --out DIR` writes the report files".into(),
            )),
        );
    }
    if !spec.map.is_empty() {
        report.push(
            at.key_error(
                "/map",
                Code::FlowShape,
                "a reconcile flow has no `map:`: lines are compared as read",
            )
            .with_hint(Some(
                "remove `map:`; name the compared fields under `reconcile:`".into(),
            )),
        );
    }
    true
}

/// Checks a reconcile flow; returns it resolved (meaningful only when no error was reported).
pub(super) fn check(
    spec: &FlowFile,
    at: &At<'_>,
    workspace: &Checked,
    shared: &Shared,
    report: &mut Report<'_>,
) -> Option<Reconciliation> {
    let config = spec.reconcile.as_ref()?;
    if !workspace.spec.objects.contains_key(&spec.object) {
        report.push(
            at.error(
                "/object",
                Code::UnknownObject,
                format!("unknown object \"{}\"", spec.object),
            )
            .with_hint(did_you_mean(
                &spec.object,
                workspace.spec.objects.keys().map(String::as_str),
            )),
        );
    }
    let statement = side(&spec.from, "/from", workspace, at, report);
    let ledger = side(&config.ledger, "/reconcile/ledger", workspace, at, report);
    let plan = plan(config, at, report);
    let trigger = check_trigger(spec, at, report);
    if matches!(trigger, Some(Trigger::Webhook(_))) {
        report.push(
            at.error(
                "/trigger/webhook",
                Code::FlowShape,
                "a reconcile flow cannot run on a webhook: it reads both sides whole",
            )
            .with_hint(Some(
                "use `cron:` (with `timezone:`) for the finance calendar, or `poll:`".into(),
            )),
        );
    }
    let owners: Vec<&str> = workspace.spec.owners.keys().map(String::as_str).collect();
    let default_owner = workspace
        .spec
        .defaults
        .as_ref()
        .and_then(|d| d.failure_owner.clone());
    let failures = check_failures(
        &spec.failures,
        default_owner,
        &owners,
        &POSSIBLE,
        at,
        report,
    );
    Some(Reconciliation {
        file: at.file.to_path_buf(),
        name: spec.flow.clone(),
        description: spec.description.clone(),
        object: spec.object.clone(),
        pattern: spec.pattern,
        latency: spec.latency,
        statement: statement?,
        ledger: ledger?,
        trigger: trigger?,
        failures,
        alert_urls: shared.alert_urls.clone(),
        plan: plan?,
    })
}

/// Resolves one side to its system's connector, which checks the settings as a `from:`.
fn side(
    source: &SourceConfig,
    base: &str,
    workspace: &Checked,
    at: &At<'_>,
    report: &mut Report<'_>,
) -> Option<Endpoint> {
    let systems: Vec<&str> = workspace.spec.systems.keys().map(String::as_str).collect();
    if !check_system(
        &source.system,
        &format!("{base}/system"),
        &systems,
        at,
        report,
    ) {
        return None;
    }
    let (connector, system_settings) = connector_of(workspace, &source.system)?;
    if !connector.roles().source {
        report.push(at.error(
            &format!("{base}/system"),
            Code::InvalidValue,
            format!(
                "system \"{}\" is reached through the `{}` connector, which cannot be read",
                source.system,
                connector.name()
            ),
        ));
        return None;
    }
    let settings = serde_json::Value::Object(source.settings.clone());
    for problem in connector.check_from(system_settings, &settings) {
        report.push(problem_diagnostic(
            &problem,
            base,
            &["system", "author"],
            at,
        ));
    }
    Some(Endpoint {
        system: source.system.clone(),
        connector,
        system_settings: system_settings.clone(),
        settings,
    })
}

fn plan(config: &ReconcileConfig, at: &At<'_>, report: &mut Report<'_>) -> Option<ReconcilePlan> {
    let errors = report.errors();
    let key = pair(&config.key, "/reconcile/key", at, report);
    let cycle = pair(&config.cycle, "/reconcile/cycle", at, report);
    let amount = pair(&config.amount, "/reconcile/amount", at, report);
    let currency = pair(&config.currency, "/reconcile/currency", at, report);
    if let Some(line) = &config.ledger_line {
        pointer(line, "/reconcile/ledger_line", at, report);
    }
    let tolerance = tolerance(&config.tolerance, "/reconcile/tolerance", false, at, report);
    let date = config.date.as_ref().and_then(|date| {
        pointer(&date.statement, "/reconcile/date/statement", at, report);
        pointer(&date.ledger, "/reconcile/date/ledger", at, report);
        let window = at.duration("/reconcile/date/window", &date.window, report)?;
        Some(DateWindow {
            statement: date.statement.clone(),
            ledger: date.ledger.clone(),
            window,
        })
    });
    let mut rules = Vec::new();
    for (name, rule) in &config.rules {
        let base = format!("/reconcile/rules/{}", seg(name));
        if let Some(when) = &rule.when {
            pointer(&when.field, &format!("{base}/when/field"), at, report);
        }
        pointer(
            &rule.ledger_field,
            &format!("{base}/ledger_field"),
            at,
            report,
        );
        pointer(&rule.by, &format!("{base}/by"), at, report);
        if rule.expect.is_empty() {
            report.push(
                at.error(
                    &format!("{base}/expect"),
                    Code::InvalidReconcile,
                    format!("rule \"{name}\" expects nothing: every line it applies to would breach it"),
                )
                .with_hint(Some(
                    "list the expected ledger value per value of `by`, such as `{ fraud: chargebacks-operator }`".into(),
                )),
            );
        }
        rules.push(Rule {
            name: name.clone(),
            description: rule.description.clone(),
            when: rule
                .when
                .as_ref()
                .map(|w| (w.field.clone(), w.equals.clone())),
            ledger_field: rule.ledger_field.clone(),
            by: rule.by.clone(),
            expect: rule.expect.clone(),
        });
    }
    let rates = rates::check(config, at, report);
    let line_date = line_date(config, at, report);
    if report.errors() > errors {
        return None;
    }
    Some(ReconcilePlan {
        key: key?,
        cycle: cycle?,
        amount: amount?,
        currency: currency?,
        ledger_line: config.ledger_line.clone(),
        strategy: config.strategy,
        tolerance,
        date: if config.date.is_some() {
            Some(date?)
        } else {
            None
        },
        rules,
        rates,
        line_date,
    })
}

/// Where lines are dated: `line_date`, else the fields `date` compares.
fn line_date(config: &ReconcileConfig, at: &At<'_>, report: &mut Report<'_>) -> Option<LineDates> {
    match (&config.line_date, &config.date) {
        (Some(dates), _) => {
            pointer(
                &dates.statement,
                "/reconcile/line_date/statement",
                at,
                report,
            );
            if let Some(ledger) = &dates.ledger {
                pointer(ledger, "/reconcile/line_date/ledger", at, report);
            }
            Some(LineDates {
                statement: dates.statement.clone(),
                ledger: dates.ledger.clone(),
            })
        }
        (None, Some(date)) => Some(LineDates {
            statement: date.statement.clone(),
            ledger: Some(date.ledger.clone()),
        }),
        (None, None) => None,
    }
}

/// Parses a tolerance table (`{ default: "0.00", JPY: "1" }`) under `base`; with `iso`, its
/// keys other than `default` must be ISO 4217 codes.
fn tolerance(
    table: &indexmap::IndexMap<String, String>,
    base: &str,
    iso: bool,
    at: &At<'_>,
    report: &mut Report<'_>,
) -> Tolerance {
    let mut tolerance = Tolerance::default();
    for (currency, text) in table {
        let at_pointer = format!("{base}/{}", seg(currency));
        if iso
            && currency != "default"
            && let Err(err) = Currency::from_code(currency)
        {
            report.push(
                at.key_error(&at_pointer, Code::InvalidReconcile, err.to_string())
                    .with_hint(Some(
                        "a tolerance is per ISO 4217 code (EUR, JPY, BHD) or `default`: the \
                         contracted amount is rounded to that currency's minor units"
                            .into(),
                    )),
            );
            continue;
        }
        match Amount::parse(text) {
            Ok(value) if value.units() >= 0 => {
                if currency == "default" {
                    tolerance.default = Some(value);
                } else {
                    tolerance.by_currency.insert(currency.clone(), value);
                }
            }
            Ok(_) => report.push(
                at.error(&at_pointer, Code::InvalidReconcile, "a tolerance cannot be negative")
                    .with_hint(Some("write the largest difference still matched, such as \"0.01\"".into())),
            ),
            Err(err) => report.push(
                at.error(&at_pointer, Code::InvalidReconcile, err.to_string()).with_hint(Some(
                    "write a decimal string such as \"0.01\" (quote it so YAML keeps its digits)"
                        .into(),
                )),
            ),
        }
    }
    tolerance
}

fn pair(pair: &FieldPair, base: &str, at: &At<'_>, report: &mut Report<'_>) -> Option<Pair> {
    let statement = pointer(&pair.statement, &format!("{base}/statement"), at, report);
    let ledger = pointer(&pair.ledger, &format!("{base}/ledger"), at, report);
    (statement && ledger).then(|| Pair {
        statement: pair.statement.clone(),
        ledger: pair.ledger.clone(),
    })
}

/// Reports a field reference that is not a JSON Pointer to a field.
fn pointer(text: &str, at_pointer: &str, at: &At<'_>, report: &mut Report<'_>) -> bool {
    if text.len() > 1 && text.starts_with('/') && !text.ends_with('/') {
        return true;
    }
    let hint = if text.starts_with('/') {
        "name a field after the slash, such as /transaction_id".to_owned()
    } else {
        format!("write it as a JSON Pointer: /{text}")
    };
    report.push(
        at.error(
            at_pointer,
            Code::InvalidReconcile,
            format!("\"{text}\" is not a JSON Pointer to a field"),
        )
        .with_hint(Some(hint)),
    );
    false
}
