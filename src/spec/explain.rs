//! `explain`: a resolved workspace in business words — the ownership matrix, who controls
//! each field, and one paragraph per flow. Returns text so it is testable without a terminal.

use std::fmt::Write;
use std::time::Duration;

use indexmap::IndexMap;

use super::model::{Action, FailureMode, FailureRoute, LatencyClass, Party, Pattern};
use super::model::{Flow, Trigger, Workspace};
use crate::reconcile::Reconciliation;
use crate::reconcile::plan::{RateCheck, RateSign, Strategy, Tolerance};

/// Renders the ownership matrix, the field control table and the flow summaries.
pub fn explain(workspace: &Workspace) -> String {
    let mut out = String::new();
    let title = workspace.name.as_deref().unwrap_or("workspace");
    let _ = writeln!(out, "# {title}\n");
    out.push_str("## Ownership\n\n");
    out.push_str(
        "SoT = source of truth, C = may create, U = may update, consume = reads only.\n\n",
    );
    out.push_str(&ownership_matrix(workspace));
    out.push_str("\n## Field control\n\n");
    out.push_str(&field_table(workspace));
    out.push_str("\n## Flows\n");
    for text in summaries_in_file_order(workspace) {
        out.push('\n');
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// Every flow's summary, moving and reconcile flows alike, in the order of their files: a
/// reconcile flow lives apart in the model (no sink, no mapping) and must not drop out here.
pub fn summaries_in_file_order(workspace: &Workspace) -> Vec<String> {
    let mut all: Vec<(&std::path::Path, String)> = workspace
        .flows
        .values()
        .map(|flow| (flow.file.as_path(), flow_summary(flow)))
        .chain(
            workspace
                .reconciliations
                .values()
                .map(|rec| (rec.file.as_path(), reconcile_summary(rec))),
        )
        .collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    all.into_iter().map(|(_, text)| text).collect()
}

/// Object × system: `SoT`, `C`, `U`, `consume`.
pub fn ownership_matrix(workspace: &Workspace) -> String {
    let mut header = vec!["object".to_owned()];
    header.extend(workspace.systems.keys().cloned());
    let mut rows = vec![header];
    for (name, object) in &workspace.objects {
        let mut row = vec![name.clone()];
        for system in workspace.systems.keys() {
            let mut roles = Vec::new();
            if &object.source_of_truth == system {
                roles.push("SoT");
            }
            if object.create.contains(system) {
                roles.push("C");
            }
            if object.update.contains(system) {
                roles.push("U");
            }
            if object.consume.contains(system) {
                roles.push("consume");
            }
            row.push(if roles.is_empty() {
                "-".to_owned()
            } else {
                roles.join(" ")
            });
        }
        rows.push(row);
    }
    table(&rows)
}

/// Field, controlled by, operator override.
pub fn field_table(workspace: &Workspace) -> String {
    let mut rows = vec![vec![
        "field".to_owned(),
        "controlled by".to_owned(),
        "operator override".to_owned(),
    ]];
    for (object_name, object) in &workspace.objects {
        for (field, control) in &object.fields {
            rows.push(vec![
                format!("{object_name}.{field}"),
                party(control.controlled_by).to_owned(),
                if control.operator_override {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
            ]);
        }
    }
    if rows.len() == 1 {
        return "No per-field control is declared.\n".to_owned();
    }
    table(&rows)
}

/// One paragraph on a flow, in business English.
pub fn flow_summary(flow: &Flow) -> String {
    let mut text = format!(
        "{}: moves {} records from {} to {}",
        flow.name, flow.object, flow.from.system, flow.to.system
    );
    let (pattern, trigger, latency) = (
        pattern_words(flow.pattern),
        trigger_sentence(&flow.trigger),
        latency_words(flow.latency),
    );
    let _ = write!(
        text,
        ". It is {pattern}, {trigger}; its latency class is {latency}."
    );
    for lookup in &flow.plan.lookups {
        let _ = write!(
            text,
            " Before mapping, `{}` is set to the {} ID known for the record's {} ID (a cross-reference stored by an earlier flow); none known is a mapping error.",
            lookup.field, lookup.object, lookup.system
        );
    }
    if let Some(split) = &flow.plan.split {
        let _ = write!(
            text,
            " Each record is split into one record per distinct `{}` among its items at {}, each delivered and keyed on its own.",
            split.by, split.items
        );
    }
    for enrichment in &flow.plan.enrichments {
        let _ = write!(text, " {}", enrichment.describe());
    }
    let conditions = flow.plan.filter.describe();
    if !conditions.is_empty() {
        let _ = write!(
            text,
            " It acts only on records where {}; others are counted as filtered, neither delivered nor dead-lettered.",
            conditions.join(" and ")
        );
    }
    let checks = flow.plan.checks.describe();
    if !checks.is_empty() {
        let _ = write!(
            text,
            " A record is not delivered but dead-lettered as check-failed, to its owner, when {}.",
            checks.join("; or when ")
        );
    }
    if let Some(guard) = &flow.plan.guard {
        let otherwise = match guard.otherwise {
            crate::spec::guard::Otherwise::Wait => {
                "waits for it (checked again on the retry policy below), then is dead-lettered as guard-unmet"
            }
            crate::spec::guard::Otherwise::Skip => "is skipped and counted as filtered",
            crate::spec::guard::Otherwise::DeadLetter => "is dead-lettered as guard-unmet at once",
        };
        let _ = write!(
            text,
            " A record is sent only once {} (read from the state store); until then it {otherwise}.",
            guard.describe()
        );
    }
    let _ = write!(
        text,
        " A failing delivery is retried with {} backoff from {} up to {} apart for {}, then dead-lettered.",
        if flow.retry.exponential {
            "exponential"
        } else {
            "fixed"
        },
        human(flow.retry.initial),
        human(flow.retry.max_delay),
        human(flow.retry.window),
    );
    if let Some(ack) = &flow.acknowledge {
        let _ = write!(text, " {}", acknowledgement(ack));
    }
    if let Some(deadline) = &flow.plan.deadline {
        let due = match (&deadline.at, &deadline.from) {
            (Some(at), _) => format!("at the time in {at}"),
            (None, Some(from)) => format!("{} after the time in {from}", human(deadline.plus)),
            (None, None) => format!("{} after it is read", human(deadline.plus)),
        };
        let _ = write!(
            text,
            " Each record must be {} {due}; its owner is warned at {:.0}% of the window and a missed deadline is dead-lettered as deadline-missed.",
            if flow.acknowledge.is_some() {
                "acknowledged"
            } else {
                "delivered"
            },
            deadline.warn_at * 100.0
        );
    }
    text.push_str(&rate_limits(flow));
    text.push_str(&failures_sentence(&flow.failures));
    match (flow.freshness, flow.max_reject_rate) {
        (None, None) => text.push_str(" No SLA is declared."),
        (freshness, reject) => {
            let mut parts = Vec::new();
            if let Some(freshness) = freshness {
                parts.push(format!("changes are delivered within {}", human(freshness)));
            }
            if let Some(reject) = reject {
                parts.push(format!("at most {reject}% of records are dead-lettered"));
            }
            let _ = write!(text, " SLA: {}.", parts.join(" and "));
        }
    }
    text
}

/// A reconcile flow in business English: what it joins to what and how, each rule and
/// contracted rate, what a variance becomes and who owns it. One line per part (overview,
/// matching, each rule, each rate, outcome), so a terminal and a page both read it as prose.
pub fn reconcile_summary(rec: &Reconciliation) -> String {
    let plan = &rec.plan;
    let mut lines = Vec::new();
    let mut text = format!(
        "{}: reconciles {} records: the statement read from system {} ({}) against the ledger read from system {} ({}).",
        rec.name,
        rec.object,
        rec.statement.system,
        location(&rec.statement.settings),
        rec.ledger.system,
        location(&rec.ledger.settings),
    );
    let _ = write!(
        text,
        " It is {}, {}; its latency class is {}.",
        pattern_words(rec.pattern),
        trigger_sentence(&rec.trigger),
        latency_words(rec.latency)
    );
    lines.push(text);

    let mut text = format!(
        "A statement line is joined to the ledger lines whose `{}` equals its `{}`, per billing cycle (`{}` on the statement, `{}` in the ledger) and currency (`{}`, `{}`); amounts (`{}`, `{}`) are compared in their own currency, never converted: a ledger line in another currency is a currency_mismatch.",
        plan.key.ledger,
        plan.key.statement,
        plan.cycle.statement,
        plan.cycle.ledger,
        plan.currency.statement,
        plan.currency.ledger,
        plan.amount.statement,
        plan.amount.ledger,
    );
    let _ = write!(text, " {}", strategy_words(plan.strategy));
    let _ = write!(text, " {}", tolerance_words(&plan.tolerance, "Amounts"));
    match &plan.date {
        Some(date) => {
            let _ = write!(
                text,
                " The ledger's `{}` must be within {} of the statement's `{}`; outside it is a date_outside_window.",
                date.ledger,
                human(date.window),
                date.statement
            );
        }
        None => text.push_str(" No date window is checked."),
    }
    if let Some(line) = &plan.ledger_line {
        let _ = write!(
            text,
            " A ledger line no statement line explains is named by its `{line}`."
        );
    }
    if let Some(dates) = &plan.line_date {
        let _ = write!(
            text,
            " Lines are dated by the statement's `{}`{} for the age of unmatched lines and each cycle's end.",
            dates.statement,
            dates
                .ledger
                .as_ref()
                .map(|l| format!(" and the ledger's `{l}`"))
                .unwrap_or_default()
        );
    }
    lines.push(text);

    let ownership = owner_of(rec, FailureMode::OwnershipViolation);
    for rule in &plan.rules {
        let mut text = format!("Rule `{}`", rule.name);
        if let Some(description) = &rule.description {
            let _ = write!(text, " ({})", inline(description));
        }
        let scope = match &rule.when {
            Some((field, value)) => format!("for statement lines whose `{field}` is \"{value}\""),
            None => "for every matched line".to_owned(),
        };
        let expected: Vec<String> = rule
            .expect
            .iter()
            .map(|(by, value)| format!("\"{value}\" when `{}` is \"{by}\"", rule.by))
            .collect();
        let _ = write!(
            text,
            ": {scope}, the ledger's `{}` must be {}; anything else (or a `{}` not listed) is a wrong_party variance, dead-lettered as ownership-violation to {ownership}.",
            rule.ledger_field,
            expected.join(", "),
            rule.by
        );
        lines.push(text);
    }

    let variance_owner = owner_of(rec, FailureMode::ReconciliationVariance);
    for rate in &plan.rates {
        let mut text = format!("Contracted rate `{}`", rate.name);
        if let Some(description) = &rate.description {
            let _ = write!(text, " ({})", inline(description));
        }
        let sign = match rate.sign {
            RateSign::Opposite => "of the opposite sign",
            RateSign::Same => "of the same sign",
        };
        let _ = write!(
            text,
            ": the statement lines whose `{}` is \"{}\" must sum, per `{}`, to {} times the lines whose `{}` is \"{}\" sharing it ({sign}), rounded {} to the currency's minor units.",
            rate.charged.0,
            rate.charged.1,
            rate.per,
            rate_table_words(rate),
            rate.base.0,
            rate.base.1,
            rounding_words(rate.rounding),
        );
        let _ = write!(
            text,
            " {} A breach is a rate_mismatch variance naming the rate, with the contracted amount, dead-lettered as reconciliation-variance to {variance_owner}.",
            tolerance_words(&rate.tolerance, "Charges")
        );
        lines.push(text);
    }

    let mut text = format!(
        "Each run writes a report of totals per cycle and currency and its variances; a cycle that ties out says so. Each variance (a line missing on either side, posted twice, at another amount or in another currency{}) is a dead letter: reconciliation-variance to {variance_owner}{}, with the runbook; a later run that no longer finds it resolves the letter.",
        if plan.date.is_some() {
            ", outside the date window"
        } else {
            ""
        },
        if plan.rules.is_empty() {
            String::new()
        } else {
            format!(", a breached rule ownership-violation to {ownership}")
        }
    );
    text.push_str(&failures_sentence(&rec.failures));
    lines.push(text);
    lines.join("\n")
}

/// Where one side of a reconciliation is read: its table, query, file path or request.
pub(crate) fn location(settings: &serde_json::Value) -> String {
    let text = |key: &str| settings.get(key).and_then(serde_json::Value::as_str);
    if let Some(table) = text("table") {
        return format!("table `{table}`");
    }
    if let Some(query) = text("query") {
        let query: Vec<&str> = query.split_whitespace().collect();
        return format!("query `{}`", query.join(" "));
    }
    if let Some(request) = settings.get("request") {
        let method = request
            .get("method")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("GET");
        if let Some(path) = request.get("path").and_then(serde_json::Value::as_str) {
            return format!("{method} {path}");
        }
    }
    for key in ["path", "folder", "glob"] {
        if let Some(path) = text(key) {
            return format!("{key} `{path}`");
        }
    }
    "as its connector reads it".to_owned()
}

fn owner_of(rec: &Reconciliation, mode: FailureMode) -> String {
    rec.failures
        .get(&mode)
        .map(|route| route.owner.clone())
        .unwrap_or_else(|| "no owner".to_owned())
}

/// How lines pair up, in business words.
pub(crate) fn strategy_words(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::OneToOne => {
            "One to one: each statement line must be posted exactly once: no ledger line is a missing_in_ledger, two or more a duplicate_in_ledger."
        }
        Strategy::OneToMany => {
            "One to many: each statement line is compared with the sum of every ledger line carrying its key (a payout booked in several journal lines)."
        }
        Strategy::ManyToOne => {
            "Many to one: the statement lines sharing a key are summed and compared with the one ledger line carrying it (an invoice's lines against its one posting); two or more are a duplicate_in_ledger."
        }
    }
}

/// The tolerance, per currency, as a sentence starting with `what`.
pub(crate) fn tolerance_words(tolerance: &Tolerance, what: &str) -> String {
    if tolerance.by_currency.is_empty() && tolerance.default.is_none_or(|d| d.is_zero()) {
        return format!("{what} must agree to the last minor unit in every currency.");
    }
    let mut parts: Vec<String> = tolerance
        .by_currency
        .iter()
        .map(|(currency, amount)| format!("{amount} in {currency}"))
        .collect();
    parts.push(match tolerance.default {
        Some(amount) => format!("{amount} in any other currency"),
        None => "none in any other currency".to_owned(),
    });
    format!(
        "{what} may differ by up to {} and still match.",
        parts.join(", ")
    )
}

/// A rate table: `12% (0.12) by default, 10% (0.10) where `/shop_id` is "S2042"`.
fn rate_table_words(rate: &RateCheck) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(by) = &rate.by {
        for (value, contracted) in &rate.contracted {
            parts.push(format!(
                "{} where `{by}` is \"{value}\"",
                percent(*contracted)
            ));
        }
    }
    match rate.default {
        Some(default) if parts.is_empty() => parts.push(percent(default)),
        Some(default) => parts.push(format!("{} otherwise", percent(default))),
        None => parts.push("no rate (a breach) for any other value".to_owned()),
    }
    parts.join(", ")
}

/// `12% (0.12)`.
pub(crate) fn percent(rate: rust_decimal::Decimal) -> String {
    let hundred = rust_decimal::Decimal::ONE_HUNDRED;
    format!("{}% ({rate})", (rate * hundred).normalize())
}

pub(crate) fn rounding_words(rounding: crate::money::Rounding) -> &'static str {
    match rounding {
        crate::money::Rounding::HalfEven => "half to even",
        crate::money::Rounding::HalfAwayFromZero => "half away from zero",
    }
}

fn pattern_words(pattern: Pattern) -> &'static str {
    match pattern {
        Pattern::Event => "an event flow",
        Pattern::NearRealTime => "a near-real-time flow",
        Pattern::Batch => "a batch flow",
    }
}

fn trigger_sentence(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Manual => "run on demand".to_owned(),
        Trigger::Poll(every) => format!("polled every {}", human(*every)),
        Trigger::Cron(cron) => {
            format!(
                "scheduled by cron `{}` ({})",
                cron.expression, cron.timezone
            )
        }
        Trigger::Webhook(path) => format!("started by webhook events on {path}"),
    }
}

fn latency_words(latency: LatencyClass) -> &'static str {
    match latency {
        LatencyClass::CheckoutBlocking => "checkout-blocking: a shopper is waiting",
        LatencyClass::SameDayOperational => {
            "same-day operational: it must land within the business day"
        }
        LatencyClass::NextCycleEnrichment => {
            "next-cycle enrichment: it may wait for the next cycle"
        }
        LatencyClass::FinanceClose => "finance-close: it must be complete before the period closes",
    }
}

/// ` Failures: mode goes to owner (action), escalated to ... after ...; ...`.
fn failures_sentence(failures: &IndexMap<FailureMode, FailureRoute>) -> String {
    let parts: Vec<String> = failures
        .iter()
        .map(|(mode, route)| {
            let action = route
                .action
                .map(|action| format!(" ({})", action_words(action)))
                .unwrap_or_default();
            let escalate = route
                .escalate
                .as_ref()
                .map(|e| format!(", escalated to {} after {}", e.to, e.after))
                .unwrap_or_default();
            format!("{mode} goes to {}{action}{escalate}", route.owner)
        })
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    format!(" Failures: {}.", parts.join("; "))
}

/// One sentence on a flow's acknowledgement: where it goes, the request (HTTP) and its body.
fn acknowledgement(ack: &super::model::Acknowledgement) -> String {
    let endpoint = &ack.endpoint;
    let mut text = format!(
        "Each delivered record is acknowledged at {}",
        endpoint.system
    );
    if endpoint.connector.name() == "http"
        && let Ok(to) = serde_json::from_value::<crate::connectors::http::HttpToConfig>(
            endpoint.settings.clone(),
        )
        && let Some(request) = to.request
    {
        let method = request
            .method
            .and_then(|m| serde_json::to_value(m).ok())
            .and_then(|m| m.as_str().map(str::to_owned))
            .unwrap_or_else(|| "POST".into());
        let _ = write!(text, " ({method} {})", request.path);
    }
    text.push_str(" once its write is durable; ");
    if !ack.map_fields.is_empty() {
        let _ = write!(
            text,
            "the body is mapped from the record as read: {}.",
            ack.map_fields.join(", ")
        );
    } else if ack.body.is_null() {
        text.push_str("no body is sent.");
    } else {
        let _ = write!(text, "the body is {}.", ack.body);
    }
    text.push_str(" A failed acknowledgement is retried, then dead-lettered.");
    text
}

fn party(party: Party) -> &'static str {
    match party {
        Party::Seller => "seller",
        Party::Operator => "operator",
    }
}

fn action_words(action: Action) -> &'static str {
    match action {
        Action::Retry => "retry",
        Action::Repair => "repair",
        Action::Suppress => "suppress",
        Action::Escalate => "escalate",
        Action::RequestCorrection => "request a correction",
    }
}

/// Wraps long lines (the flow paragraphs) at word boundaries to `width` columns; table lines,
/// which are shorter, stay as they are.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.chars().count() <= width {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut current = 0;
        for word in line.split(' ') {
            let len = word.chars().count();
            if current > 0 && current + 1 + len > width {
                out.push('\n');
                current = 0;
            } else if current > 0 {
                out.push(' ');
                current += 1;
            }
            out.push_str(word);
            current += len;
        }
        out.push('\n');
    }
    out
}

/// `1h30m`, `30s`, `250ms`.
pub(crate) fn human(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = millis;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

/// A plain-text table with aligned columns and a separator under the header.
fn table(rows: &[Vec<String>]) -> String {
    aligned_table(rows, true)
}

/// A plain-text table with aligned columns (widths in characters), optionally with a
/// separator under the header row; trailing spaces are trimmed.
pub fn aligned_table(rows: &[Vec<String>], rule_under_header: bool) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (index, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if index == 0 && rule_under_header {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}

/// The client-side rate limits a flow's calls keep to (system-wide and per operation), as a
/// sentence; empty when none is set.
fn rate_limits(flow: &Flow) -> String {
    let limit = |settings: &serde_json::Value| {
        let rate = settings.get("rate_limit")?.as_str()?;
        Some(
            match settings.get("burst").and_then(serde_json::Value::as_u64) {
                Some(burst) => format!("{rate} (burst {burst})"),
                None => rate.to_owned(),
            },
        )
    };
    let mut parts = Vec::new();
    for (end, role) in [(&flow.from, "reads from"), (&flow.to, "writes to")] {
        if let Some(rate) = limit(&end.system_settings) {
            parts.push(format!("every call to {} at most {rate}", end.system));
        }
        if let Some(rate) = end.settings.get("request").and_then(limit) {
            parts.push(format!("its {role} {} at most {rate}", end.system));
        }
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(
        " Client-side rate limits, shared by every flow of the process: {}.",
        parts.join("; ")
    )
}

/// A description written as a YAML block (`>`: lines folded, a newline at the end) as one
/// clause of a sentence: whitespace collapsed, the final full stop dropped.
fn inline(description: &str) -> String {
    let words: Vec<&str> = description.split_whitespace().collect();
    words.join(" ").trim_end_matches('.').to_owned()
}
