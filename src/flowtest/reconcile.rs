//! Flow tests of reconcile flows: the case's `input` is the statement and its `ledger` the
//! ledger's lines, reconciled in memory by the real matcher into an in-memory store; the case
//! asserts the exact variances (kind, reference, difference, currency, cycle, rule) with the
//! owner and runbook each is routed to, and the dead letters and alerts as any flow test does.

use serde_json::Value;

use crate::reconcile::amount::Amount;
use crate::reconcile::{RunOptions, Variance, run_records};
use crate::spec::model::Workspace;
use crate::spec::raw::{ExpectedVariance, TestCase};
use crate::store::{DeadLetterFilter, Store};

/// Runs one case of a reconcile flow and lists how its outcome differs from what it expects.
pub(super) fn run_case(
    workspace: &Workspace,
    flow: &str,
    case: &TestCase,
) -> anyhow::Result<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::in_memory()?;
        let outcome = run_records(
            workspace,
            flow,
            &store,
            &case.input,
            &case.ledger,
            &RunOptions::default(),
        )
        .await?;
        let mut failures = Vec::new();
        if let Some(expected) = &case.expect.variances {
            let route = |variance: &Variance| {
                workspace
                    .reconciliations
                    .get(flow)
                    .and_then(|r| r.failures.get(&variance.kind.failure()))
                    .map(|route| {
                        (
                            route.owner.clone(),
                            route.runbook.clone().unwrap_or_default(),
                        )
                    })
                    .unwrap_or_default()
            };
            compare_variances(expected, &outcome.matched.variances, &route, &mut failures);
        }
        // A case listing variances need not list the dead letters they become as well.
        if !case.expect.dead_letters.is_empty() || case.expect.variances.is_none() {
            let letters = store.dead_letters(&DeadLetterFilter::default()).await?;
            super::compare_dead_letters(&case.expect.dead_letters, &letters, &mut failures);
        }
        if !case.expect.alerts.is_empty() {
            let alerts: Vec<(String, String)> = store
                .due_alerts(i64::MAX, 10_000)
                .await?
                .into_iter()
                .map(|a| {
                    let failure = a.alert.payload["failure"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    (a.alert.owner, failure)
                })
                .collect();
            super::compare_alerts(&case.expect.alerts, &alerts, &mut failures);
        }
        Ok(failures)
    })
}

fn same_amount(expected: &Value, actual: Option<Amount>) -> bool {
    let text = match expected {
        Value::Null => return actual.is_none(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return false,
    };
    match (Amount::parse(&text), actual) {
        (Ok(want), Some(got)) => want.checked_sub(got).is_ok_and(Amount::is_zero),
        _ => false,
    }
}

fn describe(variance: &Variance, owner: &str) -> String {
    let amount = |label: &str, amount: Option<Amount>| {
        amount.map(|a| format!("{label}{a}")).unwrap_or_default()
    };
    format!(
        "{} {} ({} {}, cycle {}, difference {}{}{}, owner {owner})",
        variance.kind.as_str(),
        variance.reference(),
        variance.currency,
        amount("statement ", variance.statement_amount),
        variance.billing_cycle_id,
        variance
            .difference
            .map(|d| d.to_string())
            .unwrap_or_else(|| "null".into()),
        variance
            .rule
            .as_ref()
            .map(|r| format!(", rule {r}"))
            .unwrap_or_default(),
        amount(", expected amount ", variance.expected_amount),
    )
}

fn compare_variances(
    expected: &[ExpectedVariance],
    actual: &[Variance],
    route: &dyn Fn(&Variance) -> (String, String),
    failures: &mut Vec<String>,
) {
    let mut unused: Vec<&Variance> = actual.iter().collect();
    for want in expected {
        let Some(at) = unused
            .iter()
            .position(|v| v.kind.as_str() == want.kind && v.reference() == want.reference)
        else {
            failures.push(format!(
                "variance {} {} was expected but not found",
                want.kind, want.reference
            ));
            continue;
        };
        let got = unused.remove(at);
        let (owner, runbook) = route(got);
        let mut wrong = Vec::new();
        if let Some(difference) = &want.difference
            && !same_amount(difference, got.difference)
        {
            wrong.push(format!("difference {difference}"));
        }
        if want.currency.as_ref().is_some_and(|c| *c != got.currency) {
            wrong.push(format!(
                "currency {}",
                want.currency.as_deref().unwrap_or("")
            ));
        }
        if want
            .cycle
            .as_ref()
            .is_some_and(|c| *c != got.billing_cycle_id)
        {
            wrong.push(format!("cycle {}", want.cycle.as_deref().unwrap_or("")));
        }
        if let Some(expected) = &want.expected_amount
            && !same_amount(expected, got.expected_amount)
        {
            wrong.push(format!("expected_amount {expected}"));
        }
        if want.rule.is_some() && want.rule != got.rule {
            wrong.push(format!("rule {}", want.rule.as_deref().unwrap_or("")));
        }
        if want.owner.as_ref().is_some_and(|o| *o != owner) {
            wrong.push(format!("owner {}", want.owner.as_deref().unwrap_or("")));
        }
        if let Some(text) = &want.runbook_contains
            && !runbook.contains(text.as_str())
        {
            wrong.push(format!("a runbook containing {text:?} (it is {runbook:?})"));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "variance {} {}: expected {}; got {}",
                want.kind,
                want.reference,
                wrong.join(", "),
                describe(got, &owner)
            ));
        }
    }
    for extra in unused {
        let (owner, _) = route(extra);
        failures.push(format!("unexpected variance: {}", describe(extra, &owner)));
    }
}
