//! The evidence pack as static HTML: `index.html` and `flows/<name>.html`, one stylesheet
//! inlined in each page, no script at all.

use std::fmt::Write as _;

use super::facts::{Facts, FlowFacts, ReconcileFacts, RetryFacts, ToleranceFacts};
use super::{Context, PackFile};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#0f172a}\
table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border:1px solid #cbd5e1;padding:.3rem .6rem;text-align:left;vertical-align:top}\
th{background:#f1f5f9}code,pre{font-family:ui-monospace,monospace;font-size:.9em}pre{background:#f8fafc;padding:.6rem;overflow:auto;max-height:20rem}\
.sot{font-weight:bold;color:#1d4ed8}.muted{color:#64748b}.diagram{overflow-x:auto;border:1px solid #e2e8f0;padding:.5rem}\
.timeline{display:flex;height:1.4rem;margin:.4rem 0 1rem;max-width:40rem}.timeline div{font-size:.75rem;padding:.1rem .3rem;color:#fff;white-space:nowrap;overflow:hidden}";

fn page(title: &str, body: &str, up: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{}</title><style>{STYLE}</style></head><body>{}{body}</body></html>\n",
        escape(title),
        if up.is_empty() {
            String::new()
        } else {
            format!("<p><a href=\"{up}\">← evidence pack index</a></p>")
        }
    )
}

/// Every page of the pack.
pub fn pack(facts: &Facts, context: &Context) -> Vec<PackFile> {
    let mut files = vec![("index.html".to_owned(), index(facts, context))];
    for flow in &facts.flows {
        files.push((
            format!("flows/{}.html", flow.name),
            flow_page(flow, context),
        ));
    }
    files
}

fn provenance(context: &Context) -> String {
    format!(
        "<p class=\"muted\">Spec version {}; git revision {}.</p>",
        context.spec_version,
        escape(
            context
                .revision
                .as_deref()
                .unwrap_or("unknown (not a git checkout)")
        )
    )
}

fn index(facts: &Facts, context: &Context) -> String {
    let mut body = format!(
        "<h1>{} — evidence pack</h1>{}",
        escape(&facts.name),
        provenance(context)
    );
    body.push_str("<h2 id=\"ownership\">Ownership matrix</h2><p>SoT = source of truth, C = may create, U = may update, consume = reads only.</p>");
    body.push_str("<table id=\"ownership-matrix\"><tr><th>object</th>");
    for system in &facts.systems {
        let _ = write!(body, "<th>{}</th>", escape(&system.name));
    }
    body.push_str("</tr>");
    for object in &facts.objects {
        let _ = write!(body, "<tr><th>{}</th>", escape(&object.name));
        for system in &facts.systems {
            let s = &system.name;
            let mut roles = Vec::new();
            if &object.source_of_truth == s {
                roles.push("<span class=\"sot\">SoT</span>");
            }
            if object.create.contains(s) {
                roles.push("C");
            }
            if object.update.contains(s) {
                roles.push("U");
            }
            if object.consume.contains(s) {
                roles.push("consume");
            }
            let _ = write!(
                body,
                "<td>{}</td>",
                if roles.is_empty() {
                    "–".to_owned()
                } else {
                    roles.join(" ")
                }
            );
        }
        body.push_str("</tr>");
    }
    body.push_str("</table><h2>Field control</h2>");
    let rows: Vec<String> = facts
        .objects
        .iter()
        .flat_map(|o| {
            o.fields.iter().map(move |f| {
                format!(
                    "<tr><td><code>{}.{}</code></td><td>{}</td><td>{}</td></tr>",
                    escape(&o.name),
                    escape(&f.field),
                    escape(&f.controlled_by),
                    if f.operator_override { "yes" } else { "no" }
                )
            })
        })
        .collect();
    if rows.is_empty() {
        body.push_str("<p>No per-field control is declared.</p>");
    } else {
        let _ = write!(
            body,
            "<table><tr><th>field</th><th>controlled by</th><th>operator may override</th></tr>{}</table>",
            rows.concat()
        );
    }
    body.push_str("<h2>Systems</h2><table><tr><th>system</th><th>connector</th><th>acts for</th><th>description</th></tr>");
    for system in &facts.systems {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&system.name),
            escape(&system.connector),
            escape(system.acts_for.as_deref().unwrap_or("–")),
            escape(system.description.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</table><h2>Objects and contracts</h2><table><tr><th>object</th><th>key</th><th>contract version</th></tr>");
    for object in &facts.objects {
        let _ = write!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            escape(&object.name),
            escape(&object.key.join(", ")),
            escape(&object.contract_version)
        );
    }
    body.push_str("</table><h2>Flows</h2><table><tr><th>flow</th><th>object</th><th>path</th><th>pattern</th><th>latency</th><th>SLA</th></tr>");
    for flow in &facts.flows {
        let _ = write!(
            body,
            "<tr><td><a href=\"flows/{0}.html\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td></tr>",
            escape(&flow.name),
            escape(&flow.object),
            escape(&flow.path()),
            escape(&flow.pattern),
            escape(&flow.latency),
            escape(&sla(flow))
        );
    }
    body.push_str("</table>");
    body.push_str(&failure_owners(facts));
    if let Some(state) = &context.state {
        let _ = write!(
            body,
            "<h2>Operations</h2><p class=\"muted\">From {}.</p>",
            escape(&state.store)
        );
        if state.open_dead_letters.is_empty() {
            body.push_str("<p>No open dead letters.</p>");
        } else {
            body.push_str("<table id=\"open-dead-letters\"><tr><th>owner</th><th>flow</th><th>failure mode</th><th>open</th></tr>");
            let mut rows = state.open_dead_letters.clone();
            rows.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(&b.0)));
            for (flow, mode, owner, count) in rows {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{count}</td></tr>",
                    escape(&owner),
                    escape(&flow),
                    escape(&mode)
                );
            }
            body.push_str("</table>");
        }
        if !state.recent.is_empty() {
            body.push_str("<h3>Recent activity</h3><table><tr><th>time</th><th>flow</th><th>action</th><th>detail</th></tr>");
            for (time, flow, action, detail) in &state.recent {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(time),
                    escape(flow),
                    escape(action),
                    escape(detail)
                );
            }
            body.push_str("</table>");
        }
    }
    page(&format!("{} — evidence pack", facts.name), &body, "")
}

/// Who receives which dead letters, owner by owner, across every flow (reconcile flows too):
/// the ownership of failures beside the ownership of data.
fn failure_owners(facts: &Facts) -> String {
    let mut rows: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for flow in &facts.flows {
        for failure in &flow.failures {
            match rows
                .iter_mut()
                .find(|(owner, name, _)| *owner == failure.owner && *name == flow.name)
            {
                Some(row) => row.2.push(&failure.mode),
                None => rows.push((&failure.owner, &flow.name, vec![&failure.mode])),
            }
        }
    }
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from(
        "<h2>Failure owners</h2><table id=\"failure-owners\"><tr><th>owner</th><th>flow</th><th>failure modes</th></tr>",
    );
    for (owner, flow, modes) in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><a href=\"flows/{1}.html\">{1}</a></td><td>{2}</td></tr>",
            escape(owner),
            escape(flow),
            escape(&modes.join(", "))
        );
    }
    out.push_str("</table>");
    out
}

fn sla(flow: &FlowFacts) -> String {
    let mut parts = Vec::new();
    if let Some(f) = &flow.freshness {
        parts.push(format!("fresh within {f}"));
    }
    if let Some(r) = flow.max_reject_rate {
        parts.push(format!("≤ {r}% rejected"));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn flow_page(flow: &FlowFacts, context: &Context) -> String {
    let mut body = format!(
        "<h1>Flow {}</h1>{}",
        escape(&flow.name),
        provenance(context)
    );
    for paragraph in flow.summary.lines() {
        let _ = write!(body, "<p>{}</p>", escape(paragraph));
    }
    let _ = write!(
        body,
        "<p class=\"muted\">File <code>{}</code>; {} · {} · {}.</p>",
        escape(&flow.file),
        escape(&flow.pattern),
        escape(&flow.trigger),
        escape(&flow.latency)
    );
    let _ = write!(
        body,
        "<h2>Path</h2><div class=\"diagram\">{}</div>",
        super::svg::flow_diagram(flow)
    );
    match &flow.reconcile {
        Some(rec) => body.push_str(&reconcile_sections(rec)),
        None => body.push_str(&moving_sections(flow)),
    }
    let _ = write!(body, "<h2>SLA</h2><p>{}</p>", escape(&sla(flow)));
    body.push_str(&failures_and_samples(flow));
    page(&format!("Flow {}", flow.name), &body, "../index.html")
}

/// Mapping, record steps, retry and deadline of a moving flow.
fn moving_sections(flow: &FlowFacts) -> String {
    let mut body = String::from("<h2>Mapping</h2>");
    if let Some(key) = &flow.idempotency_key {
        let _ = write!(
            body,
            "<p>Idempotency key: <code>{}</code> (a record with a key already processed is a duplicate).</p>",
            escape(key)
        );
    }
    body.push_str(
        "<table class=\"mapping\"><tr><th>output field</th><th>from</th><th>type</th></tr>",
    );
    for field in &flow.mapping {
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
            escape(&field.field),
            escape(&field.source),
            escape(field.kind.as_deref().unwrap_or("as rendered"))
        );
    }
    body.push_str("</table>");
    let steps: Vec<String> = flow
        .enrichments
        .iter()
        .cloned()
        .chain(
            flow.filters
                .iter()
                .map(|f| format!("Acts only on records where {f}.")),
        )
        .chain(flow.guard.iter().map(|g| format!("Waits until {g}.")))
        .chain(
            flow.split
                .iter()
                .map(|s| format!("Splits each record: {s}.")),
        )
        .collect();
    if !steps.is_empty() {
        body.push_str("<h2>Record steps</h2><ul>");
        for step in steps {
            let _ = write!(body, "<li>{}</li>", escape(&step));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>Retry and deadline</h2>");
    if let Some(retry) = &flow.retry {
        let _ = write!(
            body,
            "<p>A failing delivery is retried with {} backoff from {} up to {} apart, for {}; then it is dead-lettered.</p>",
            escape(&retry.backoff),
            escape(&retry.initial),
            escape(&retry.max_delay),
            escape(&retry.window)
        );
        body.push_str(&timeline(flow, retry));
    }
    if let Some(deadline) = &flow.deadline {
        let _ = write!(
            body,
            "<p>Deadline: <code>{}</code></p>",
            escape(&deadline.to_string())
        );
    }
    body
}

/// The matching settings, rules and contracted rates of a reconcile flow, as tables.
fn reconcile_sections(rec: &ReconcileFacts) -> String {
    let mut body = String::from(
        "<h2>Matching</h2><table class=\"matching\"><tr><th>setting</th><th>statement</th><th>ledger</th></tr>",
    );
    let row = |body: &mut String, name: &str, statement: &str, ledger: &str| {
        let _ = write!(
            body,
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            escape(name),
            statement,
            ledger
        );
    };
    let code = |text: &str| {
        if text.is_empty() {
            "–".to_owned()
        } else {
            format!("<code>{}</code>", escape(text))
        }
    };
    row(
        &mut body,
        "read from",
        &format!(
            "{} ({}): {}",
            escape(&rec.statement.system),
            escape(&rec.statement.connector),
            escape(&rec.statement.location)
        ),
        &format!(
            "{} ({}): {}",
            escape(&rec.ledger.system),
            escape(&rec.ledger.connector),
            escape(&rec.ledger.location)
        ),
    );
    for (name, pair) in [
        ("join key", &rec.key),
        ("billing cycle", &rec.cycle),
        ("amount", &rec.amount),
        ("currency", &rec.currency),
    ] {
        row(&mut body, name, &code(&pair.statement), &code(&pair.ledger));
    }
    if let Some(line) = &rec.ledger_line {
        row(&mut body, "ledger line ID", "–", &code(line));
    }
    if let Some(window) = &rec.date_window {
        row(
            &mut body,
            &format!("dates (within {})", window.window),
            &code(&window.statement),
            &code(&window.ledger),
        );
    }
    if let Some(dates) = &rec.line_date {
        row(
            &mut body,
            "line date (ages)",
            &code(&dates.statement),
            &code(&dates.ledger),
        );
    }
    body.push_str("</table>");
    let _ = write!(
        body,
        "<p>Strategy <code>{}</code>: {}</p><p>{}</p>",
        escape(&rec.strategy),
        escape(&rec.strategy_words),
        escape(&rec.tolerance_words)
    );
    if !rec.tolerance.is_empty() {
        body.push_str(&tolerance_table(&rec.tolerance));
    }
    if rec.date_window.is_none() {
        body.push_str("<p>No date window is checked.</p>");
    }
    body.push_str("<h2>Rules</h2>");
    if rec.rules.is_empty() {
        body.push_str("<p>No rule is declared.</p>");
    } else {
        body.push_str("<table class=\"rules\"><tr><th>rule</th><th>when</th><th>ledger field</th><th>expected</th><th>breach</th><th>owner</th></tr>");
        for rule in &rec.rules {
            let expected: Vec<String> = rule
                .expect
                .iter()
                .map(|e| {
                    format!(
                        "<code>{}</code> = {} → {}",
                        escape(&rule.by),
                        escape(&e.when),
                        escape(&e.expect)
                    )
                })
                .collect();
            let _ = write!(
                body,
                "<tr><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{} ({})</td><td>{}</td></tr>",
                escape(&rule.name),
                escape(rule.description.as_deref().unwrap_or("")),
                escape(rule.when.as_deref().unwrap_or("every matched line")),
                escape(&rule.ledger_field),
                expected.join("<br>"),
                escape(&rule.variance),
                escape(&rule.failure),
                escape(&rule.owner)
            );
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>Contracted rates</h2>");
    if rec.rates.is_empty() {
        body.push_str("<p>No contracted rate is checked.</p>");
    } else {
        body.push_str("<table class=\"rates\"><tr><th>rate</th><th>charged lines</th><th>base lines</th><th>per</th><th>by</th><th>rate table</th><th>sign</th><th>rounding</th><th>tolerance</th><th>breach</th><th>owner</th></tr>");
        for rate in &rec.rates {
            let mut table: Vec<String> = rate
                .contracted
                .iter()
                .map(|c| format!("{}: {}", escape(&c.when), escape(&c.expect)))
                .collect();
            table.push(match &rate.default {
                Some(default) => format!("default: {}", escape(default)),
                None => "no default (unlisted values breach)".to_owned(),
            });
            let tolerance: Vec<String> = rate
                .tolerance
                .iter()
                .map(|t| format!("{} {}", escape(&t.currency), escape(&t.amount)))
                .collect();
            let _ = write!(
                body,
                "<tr><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td></tr>",
                escape(&rate.name),
                escape(rate.description.as_deref().unwrap_or("")),
                escape(&rate.charged),
                escape(&rate.base),
                escape(&rate.per),
                rate.by
                    .as_deref()
                    .map(&code)
                    .unwrap_or_else(|| "–".to_owned()),
                table.join("<br>"),
                escape(&rate.sign),
                escape(&rate.rounding),
                if tolerance.is_empty() {
                    "exact".to_owned()
                } else {
                    tolerance.join("<br>")
                },
                escape(&rate.variance),
                escape(&rate.failure),
                escape(&rate.owner)
            );
        }
        body.push_str("</table>");
    }
    let _ = write!(body, "<h2>Variances</h2><p>{}</p>", escape(&rec.outcome));
    body
}

fn tolerance_table(tolerance: &[ToleranceFacts]) -> String {
    let mut out = String::from(
        "<table class=\"tolerance\"><tr><th>currency</th><th>largest difference matched</th></tr>",
    );
    for t in tolerance {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&t.currency),
            escape(&t.amount)
        );
    }
    out.push_str("</table>");
    out
}

/// The failure modes table and the sample payloads of the flow's tests.
fn failures_and_samples(flow: &FlowFacts) -> String {
    let mut body = String::new();
    body.push_str("<h2>Failure modes</h2><table class=\"failures\"><tr><th>failure mode</th><th>owner</th><th>action</th><th>runbook</th><th>escalation</th></tr>");
    for failure in &flow.failures {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&failure.mode),
            escape(&failure.owner),
            escape(failure.action.as_deref().unwrap_or("–")),
            escape(failure.runbook.as_deref().unwrap_or("no runbook")),
            escape(failure.escalate.as_deref().unwrap_or("–"))
        );
    }
    body.push_str("</table><h2>Sample payloads</h2>");
    if flow.samples.is_empty() {
        body.push_str("<p>No flow test covers this flow.</p>");
    }
    for sample in flow.samples.iter().take(6) {
        let _ = write!(body, "<h3>{}</h3>", escape(&sample.case));
        for (label, value) in [
            ("input", &sample.input),
            ("output", &sample.output),
            ("dead letter", &sample.dead_letter),
            ("alert", &sample.alert),
        ] {
            if let Some(value) = value {
                let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
                let _ = write!(body, "<p>{label}</p><pre>{}</pre>", escape(&pretty));
            }
        }
        for (label, lines) in [
            ("statement lines", &sample.statement),
            ("ledger lines", &sample.ledger),
        ] {
            if !lines.is_empty() {
                let _ = write!(
                    body,
                    "<p>{label}</p><pre>{}</pre>",
                    escape(&json_lines(lines))
                );
            }
        }
        match sample.variances.as_deref() {
            Some([]) => body.push_str("<p>expected variances: none (every cycle ties out)</p>"),
            Some(variances) => {
                let _ = write!(
                    body,
                    "<p>expected variances</p><pre>{}</pre>",
                    escape(&json_lines(variances))
                );
            }
            None => {}
        }
    }
    body
}

/// One compact JSON object per line: a case's lines read as the rows they are.
pub(super) fn json_lines(values: &[serde_json::Value]) -> String {
    values
        .iter()
        .map(|v| serde_json::to_string(v).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The retry window beside the SLA freshness, as proportional bars: a window longer than the
/// freshness shows at a glance.
fn timeline(flow: &FlowFacts, retry: &RetryFacts) -> String {
    let freshness = flow
        .freshness
        .as_deref()
        .and_then(|f| crate::spec::parse_duration(f).ok())
        .map(|d| d.as_secs());
    let window = retry.window_seconds.max(1);
    let longest = freshness.unwrap_or(0).max(window) as f64;
    let bar = |label: String, seconds: u64, colour: &str| {
        format!(
            "<div style=\"width:{:.1}%;background:{colour}\" title=\"{}\">{}</div>",
            (seconds as f64 / longest * 100.0).max(8.0),
            escape(&label),
            escape(&label)
        )
    };
    let mut out = format!(
        "<div class=\"timeline\">{}</div>",
        bar(format!("retry window {}", retry.window), window, "#b91c1c")
    );
    if let (Some(seconds), Some(text)) = (freshness, &flow.freshness) {
        out.push_str(&format!(
            "<div class=\"timeline\">{}</div>",
            bar(format!("freshness SLA {text}"), seconds, "#15803d")
        ));
    }
    out
}
