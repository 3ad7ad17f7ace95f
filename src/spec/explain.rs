//! `explain`: a resolved workspace in business words — the ownership matrix, who controls
//! each field, and one paragraph per flow. Returns text so it is testable without a terminal.

use std::fmt::Write;
use std::time::Duration;

use super::model::{Action, LatencyClass, Party, Pattern};
use super::model::{Flow, Trigger, Workspace};

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
    for flow in workspace.flows.values() {
        out.push('\n');
        out.push_str(&flow_summary(flow));
        out.push('\n');
    }
    out
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
    let pattern = match flow.pattern {
        Pattern::Event => "an event flow",
        Pattern::NearRealTime => "a near-real-time flow",
        Pattern::Batch => "a batch flow",
    };
    let trigger = match &flow.trigger {
        Trigger::Manual => "run on demand".to_owned(),
        Trigger::Poll(every) => format!("polled every {}", human(*every)),
        Trigger::Cron(cron) => {
            format!(
                "scheduled by cron `{}` ({})",
                cron.expression, cron.timezone
            )
        }
        Trigger::Webhook(path) => format!("started by webhook events on {path}"),
    };
    let latency = match flow.latency {
        LatencyClass::CheckoutBlocking => "checkout-blocking: a shopper is waiting",
        LatencyClass::SameDayOperational => {
            "same-day operational: it must land within the business day"
        }
        LatencyClass::NextCycleEnrichment => {
            "next-cycle enrichment: it may wait for the next cycle"
        }
        LatencyClass::FinanceClose => "finance-close: it must be complete before the period closes",
    };
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
    let failures: Vec<String> = flow
        .failures
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
    if !failures.is_empty() {
        let _ = write!(text, " Failures: {}.", failures.join("; "));
    }
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
