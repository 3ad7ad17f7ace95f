//! The reconciliation report: per cycle and currency whether it ties out, and the variances.
//! Written as `variances.jsonl` and `totals.jsonl` (the shape the shared verifier reads, with
//! a few more keys), `report.csv` (one variance per row, for a spreadsheet) and `report.md`
//! (for finance: a totals table per cycle, then the variances most significant first, each
//! with its owner; the runbooks once at the end); also rendered for the terminal and as JSON,
//! and set as metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde_json::json;

use super::Outcome;
use super::amount::Amount;
use super::matcher::{Kind, Matched, Side, Variance};
use super::plan::Reconciliation;
use crate::metrics::Metrics;
use crate::metrics::catalog::{
    RECONCILIATION_CYCLE_TIED, RECONCILIATION_UNMATCHED, RECONCILIATION_VARIANCES,
    SETTLEMENT_VARIANCE,
};
use crate::spec::model::FailureMode;

/// Variances listed per cycle in `report.md` and on the terminal; the rest are in the CSV.
const LISTED: usize = 25;

/// A report file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("report {path}: {source}")]
pub struct ReportError {
    /// The file.
    pub path: std::path::PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// One (cycle, currency) line of the totals.
struct TotalLine<'a> {
    cycle: &'a str,
    currency: &'a str,
    statement: Amount,
    ledger: Amount,
    variance: Amount,
    variances: usize,
}

impl TotalLine<'_> {
    fn ties_out(&self) -> bool {
        self.variance.is_zero() && self.variances == 0
    }
}

fn total_lines(matched: &Matched) -> Vec<TotalLine<'_>> {
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for v in &matched.variances {
        *counts
            .entry((v.billing_cycle_id.as_str(), v.currency.as_str()))
            .or_default() += 1;
    }
    matched
        .totals
        .iter()
        .map(|((cycle, currency), totals)| TotalLine {
            cycle,
            currency,
            statement: totals.statement,
            ledger: totals.ledger,
            variance: totals
                .ledger
                .checked_sub(totals.statement)
                .unwrap_or(Amount::ZERO),
            variances: counts
                .get(&(cycle.as_str(), currency.as_str()))
                .copied()
                .unwrap_or(0),
        })
        .collect()
}

/// Whether every cycle and currency ties out.
pub fn ties_out(matched: &Matched) -> bool {
    matched.variances.is_empty() && total_lines(matched).iter().all(TotalLine::ties_out)
}

fn owner(reconciliation: &Reconciliation, kind: Kind) -> &str {
    reconciliation
        .failures
        .get(&kind.failure())
        .map(|r| r.owner.as_str())
        .unwrap_or("unowned")
}

fn variance_json(reconciliation: &Reconciliation, v: &Variance) -> serde_json::Value {
    let mut value = serde_json::to_value(v).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("failure".into(), json!(v.kind.failure().as_str()));
        object.insert("owner".into(), json!(owner(reconciliation, v.kind)));
    }
    value
}

/// Writes `variances.jsonl`, `totals.jsonl`, `report.csv` and `report.md` into `dir`.
pub fn write_files(
    dir: &Path,
    reconciliation: &Reconciliation,
    outcome: &Outcome,
) -> Result<(), ReportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReportError { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let matched = &outcome.matched;

    let path = dir.join("variances.jsonl");
    let mut out = Vec::with_capacity(matched.variances.len() * 200);
    for v in &matched.variances {
        let _ = serde_json::to_writer(&mut out, &variance_json(reconciliation, v));
        out.push(b'\n');
    }
    write(&path, &out).map_err(io(&path))?;

    let path = dir.join("totals.jsonl");
    let mut out = Vec::new();
    for line in total_lines(matched) {
        let _ = serde_json::to_writer(
            &mut out,
            &json!({
                "billing_cycle_id": line.cycle, "currency": line.currency,
                "statement_total": line.statement.to_string(),
                "ledger_total": line.ledger.to_string(),
                "variance": line.variance.to_string(),
                "variances": line.variances, "ties_out": line.ties_out(),
            }),
        );
        out.push(b'\n');
    }
    write(&path, &out).map_err(io(&path))?;

    let path = dir.join("report.csv");
    write(&path, csv(reconciliation, matched).as_bytes()).map_err(io(&path))?;
    let path = dir.join("report.md");
    write(&path, markdown(reconciliation, outcome).as_bytes()).map_err(io(&path))?;
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn amount_text(amount: Option<Amount>) -> String {
    amount.map(|a| a.to_string()).unwrap_or_default()
}

fn csv(reconciliation: &Reconciliation, matched: &Matched) -> String {
    let mut out = String::from(
        "billing_cycle_id,currency,kind,transaction_id,journal_id,difference,statement_amount,ledger_amount,expected_amount,rule,failure,owner,detail\n",
    );
    for v in &matched.variances {
        let fields = [
            v.billing_cycle_id.clone(),
            v.currency.clone(),
            v.kind.as_str().to_owned(),
            v.transaction_id.clone().unwrap_or_default(),
            v.journal_id.clone().unwrap_or_default(),
            amount_text(v.difference),
            amount_text(v.statement_amount),
            amount_text(v.ledger_amount),
            amount_text(v.expected_amount),
            v.rule.clone().unwrap_or_default(),
            v.kind.failure().as_str().to_owned(),
            owner(reconciliation, v.kind).to_owned(),
            v.detail.clone(),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// Variances of one cycle, most significant first (largest amount at stake, then kind and
/// reference, so the order is stable).
fn by_significance<'a>(matched: &'a Matched, cycle: &str) -> Vec<&'a Variance> {
    let mut list: Vec<&Variance> = matched
        .variances
        .iter()
        .filter(|v| v.billing_cycle_id == cycle)
        .collect();
    list.sort_by(|a, b| {
        b.magnitude()
            .cmp_value(a.magnitude())
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| a.reference().cmp(b.reference()))
    });
    list
}

fn cycles(matched: &Matched) -> Vec<String> {
    let mut cycles: Vec<String> = matched.totals.keys().map(|(c, _)| c.clone()).collect();
    for v in &matched.variances {
        cycles.push(v.billing_cycle_id.clone());
    }
    cycles.sort();
    cycles.dedup();
    cycles
}

fn markdown(reconciliation: &Reconciliation, outcome: &Outcome) -> String {
    let matched = &outcome.matched;
    let mut md = String::new();
    let _ = writeln!(md, "# Reconciliation: {}\n", reconciliation.name);
    let _ = writeln!(
        md,
        "Statement: {} lines from `{}`. Ledger: {} lines from `{}`.{}\n",
        matched.statement_lines,
        reconciliation.statement.system,
        matched.ledger_lines,
        reconciliation.ledger.system,
        outcome
            .cycle
            .as_deref()
            .map(|c| format!(" Cycle {c} only."))
            .unwrap_or_default()
    );
    let totals = total_lines(matched);
    for cycle in cycles(matched) {
        let lines: Vec<&TotalLine<'_>> = totals.iter().filter(|l| l.cycle == cycle).collect();
        let variances = by_significance(matched, &cycle);
        let tied = variances.is_empty() && lines.iter().all(|l| l.ties_out());
        let _ = writeln!(
            md,
            "## {cycle}: {}\n",
            if tied {
                "ties out".to_owned()
            } else {
                format!("does not tie out ({} variances)", variances.len())
            }
        );
        md.push_str("| Currency | Statement total | Ledger total | Variance | Ties out |\n");
        md.push_str("|---|---:|---:|---:|---|\n");
        for l in &lines {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                l.currency,
                l.statement,
                l.ledger,
                l.variance,
                if l.ties_out() { "yes" } else { "no" }
            );
        }
        md.push('\n');
        if !variances.is_empty() {
            md.push_str(
                "| Kind | Reference | Ledger line | Difference | Currency | Owner | Detail |\n",
            );
            md.push_str("|---|---|---|---:|---|---|---|\n");
            for v in variances.iter().take(LISTED) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    v.kind.as_str(),
                    v.transaction_id.as_deref().unwrap_or("-"),
                    v.journal_id.as_deref().unwrap_or("-"),
                    v.difference
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "n/a".into()),
                    v.currency,
                    owner(reconciliation, v.kind),
                    v.detail.replace('|', "\\|")
                );
            }
            if variances.len() > LISTED {
                let _ = writeln!(
                    md,
                    "\n{} more variances in this cycle are in `report.csv`.",
                    variances.len() - LISTED
                );
            }
            md.push('\n');
        }
    }
    md.push_str("## Owners and runbooks\n\n");
    for mode in [
        FailureMode::ReconciliationVariance,
        FailureMode::OwnershipViolation,
    ] {
        if let Some(route) = reconciliation.failures.get(&mode) {
            let _ = writeln!(
                md,
                "- **{}** ({}): {}",
                mode.as_str(),
                route.owner,
                route.runbook.as_deref().unwrap_or("no runbook declared")
            );
        }
    }
    let _ = writeln!(
        md,
        "\nDead letters: {} new, {} already recorded by an earlier run, {} resolved (variance gone).",
        outcome.letters.created, outcome.letters.already, outcome.letters.resolved
    );
    md
}

/// The summary for a terminal: per cycle and currency whether it ties out, then the
/// variances by kind and the most significant ones.
pub fn render_human(reconciliation: &Reconciliation, outcome: &Outcome) -> String {
    let matched = &outcome.matched;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} statement lines, {} ledger lines, {} variances",
        reconciliation.name,
        matched.statement_lines,
        matched.ledger_lines,
        matched.variances.len()
    );
    let totals = total_lines(matched);
    for cycle in cycles(matched) {
        for l in totals.iter().filter(|l| l.cycle == cycle) {
            let _ = writeln!(
                out,
                "  {cycle} {}: {} (statement {}, ledger {}, variance {}, {} variances)",
                l.currency,
                if l.ties_out() {
                    "ties out"
                } else {
                    "does not tie out"
                },
                l.statement,
                l.ledger,
                l.variance,
                l.variances
            );
        }
    }
    let mut kinds: BTreeMap<Kind, usize> = BTreeMap::new();
    for v in &matched.variances {
        *kinds.entry(v.kind).or_default() += 1;
    }
    if !kinds.is_empty() {
        let list: Vec<String> = kinds
            .iter()
            .map(|(k, n)| format!("{} {n}", k.as_str()))
            .collect();
        let _ = writeln!(out, "variances by kind: {}", list.join(", "));
    }
    let _ = writeln!(
        out,
        "dead letters: {} new, {} already recorded, {} resolved",
        outcome.letters.created, outcome.letters.already, outcome.letters.resolved
    );
    out
}

/// The summary as JSON.
pub fn render_json(reconciliation: &Reconciliation, outcome: &Outcome) -> serde_json::Value {
    let matched = &outcome.matched;
    let totals: Vec<serde_json::Value> = total_lines(matched)
        .iter()
        .map(|l| {
            json!({
                "billing_cycle_id": l.cycle, "currency": l.currency,
                "statement_total": l.statement.to_string(), "ledger_total": l.ledger.to_string(),
                "variance": l.variance.to_string(), "variances": l.variances,
                "ties_out": l.ties_out(),
            })
        })
        .collect();
    let variances: Vec<serde_json::Value> = matched
        .variances
        .iter()
        .map(|v| variance_json(reconciliation, v))
        .collect();
    json!({
        "flow": reconciliation.name,
        "cycle": outcome.cycle,
        "statement_lines": matched.statement_lines,
        "ledger_lines": matched.ledger_lines,
        "ties_out": ties_out(matched),
        "totals": totals,
        "variances": variances,
        "dead_letters": {
            "created": outcome.letters.created,
            "already": outcome.letters.already,
            "resolved": outcome.letters.resolved,
        },
    })
}

/// The age buckets of unmatched lines, youngest first: a day (today's close), a week, a
/// month (a monthly close missed), older; `unknown` when neither the line nor its cycle is
/// dated.
pub const AGE_BUCKETS: [&str; 5] = ["0-1d", "1-7d", "7-30d", "30d+", "unknown"];

/// The age bucket of a line dated `dated` (Unix seconds) at `now`; a line dated in the future
/// is in the youngest.
pub fn age_bucket(dated: Option<i64>, now: i64) -> &'static str {
    const DAY: i64 = 86_400;
    match dated.map(|at| now.saturating_sub(at)) {
        None => "unknown",
        Some(age) if age < DAY => "0-1d",
        Some(age) if age < 7 * DAY => "1-7d",
        Some(age) if age < 30 * DAY => "7-30d",
        Some(_) => "30d+",
    }
}

/// Whether each cycle of the run tied out: every currency's variance zero and no variance.
pub fn cycles_tied(matched: &Matched) -> BTreeMap<String, bool> {
    let mut tied: BTreeMap<String, bool> = BTreeMap::new();
    for l in total_lines(matched) {
        *tied.entry(l.cycle.to_owned()).or_insert(true) &= l.ties_out();
    }
    for v in &matched.variances {
        if !v.billing_cycle_id.is_empty() {
            tied.insert(v.billing_cycle_id.clone(), false);
        }
    }
    tied
}

/// Sets the reconciliation gauges from a run's result at `now`. A run of every cycle
/// replaces the flow's series (a cycle or kind gone from the statement disappears); a run of
/// one cycle only sets its own.
pub fn set_metrics(
    metrics: &Metrics,
    flow: &str,
    matched: &Matched,
    whole: bool,
    now: jiff::Timestamp,
) {
    if whole {
        for metric in [
            &SETTLEMENT_VARIANCE,
            &RECONCILIATION_CYCLE_TIED,
            &RECONCILIATION_VARIANCES,
            &RECONCILIATION_UNMATCHED,
        ] {
            metrics.clear_gauge_where(metric, "flow", flow);
        }
    }
    for l in &total_lines(matched) {
        metrics.set(
            &SETTLEMENT_VARIANCE,
            vec![
                ("flow", flow.to_owned()),
                ("cycle", l.cycle.to_owned()),
                ("currency", l.currency.to_owned()),
            ],
            l.variance.to_string().parse().unwrap_or(0.0),
        );
    }
    for (cycle, ok) in cycles_tied(matched) {
        metrics.set(
            &RECONCILIATION_CYCLE_TIED,
            vec![("flow", flow.to_owned()), ("cycle", cycle)],
            if ok { 1.0 } else { 0.0 },
        );
    }
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    let mut unmatched: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let now = now.as_second();
    for v in &matched.variances {
        *kinds.entry(v.kind.as_str()).or_default() += 1;
        let side = match (v.kind, v.side) {
            (Kind::MissingInLedger, _) => "statement",
            (Kind::MissingInStatement, Side::Ledger) => "ledger",
            _ => continue,
        };
        // A line without a date of its own is as old as its cycle's end.
        let dated = v.dated.or_else(|| {
            matched
                .cycle_dates
                .get(&v.billing_cycle_id)
                .map(|&(_, end)| end)
        });
        *unmatched.entry((side, age_bucket(dated, now))).or_default() += 1;
    }
    for (kind, n) in kinds {
        metrics.set(
            &RECONCILIATION_VARIANCES,
            vec![("flow", flow.to_owned()), ("kind", kind.to_owned())],
            n as f64,
        );
    }
    // Every bucket of both sides, zeros included: a series that vanishes when it reaches
    // zero would break alerts and stacked graphs.
    for side in ["statement", "ledger"] {
        for age in AGE_BUCKETS {
            let n = unmatched.get(&(side, age)).copied().unwrap_or(0);
            metrics.set(
                &RECONCILIATION_UNMATCHED,
                vec![
                    ("flow", flow.to_owned()),
                    ("side", side.to_owned()),
                    ("age", age.to_owned()),
                ],
                n as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_fall_in_one_bucket_each() {
        const DAY: i64 = 86_400;
        let now = 1_800_000_000;
        let bucket = |age: i64| age_bucket(Some(now - age), now);
        assert_eq!(bucket(-3600), "0-1d");
        assert_eq!(bucket(0), "0-1d");
        assert_eq!(bucket(DAY - 1), "0-1d");
        assert_eq!(bucket(DAY), "1-7d");
        assert_eq!(bucket(7 * DAY - 1), "1-7d");
        assert_eq!(bucket(7 * DAY), "7-30d");
        assert_eq!(bucket(30 * DAY), "30d+");
        assert_eq!(age_bucket(None, now), "unknown");
        assert_eq!(age_bucket(Some(i64::MIN), now), "30d+");
    }
}
