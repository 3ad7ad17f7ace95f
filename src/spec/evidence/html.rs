//! The evidence pack as static HTML: `index.html` and `flows/<name>.html`, one stylesheet
//! inlined in each page, no script at all.

use std::fmt::Write as _;

use super::facts::{Facts, FlowFacts};
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
            "<tr><td><a href=\"flows/{0}.html\">{0}</a></td><td>{1}</td><td>{2} → {3}</td><td>{4}</td><td>{5}</td><td>{6}</td></tr>",
            escape(&flow.name),
            escape(&flow.object),
            escape(&flow.from),
            escape(&flow.to),
            escape(&flow.pattern),
            escape(&flow.latency),
            escape(&sla(flow))
        );
    }
    body.push_str("</table>");
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
        "<h1>Flow {}</h1>{}<p>{}</p>",
        escape(&flow.name),
        provenance(context),
        escape(&flow.summary)
    );
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
    body.push_str("<h2>Mapping</h2>");
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
    let _ = write!(
        body,
        "<p>A failing delivery is retried with {} backoff from {} up to {} apart, for {}; then it is dead-lettered.</p>",
        escape(&flow.retry.backoff),
        escape(&flow.retry.initial),
        escape(&flow.retry.max_delay),
        escape(&flow.retry.window)
    );
    body.push_str(&timeline(flow));
    if let Some(deadline) = &flow.deadline {
        let _ = write!(
            body,
            "<p>Deadline: <code>{}</code></p>",
            escape(&deadline.to_string())
        );
    }
    let _ = write!(body, "<h2>SLA</h2><p>{}</p>", escape(&sla(flow)));
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
    }
    page(&format!("Flow {}", flow.name), &body, "../index.html")
}

/// The retry window beside the SLA freshness, as proportional bars: a window longer than the
/// freshness shows at a glance.
fn timeline(flow: &FlowFacts) -> String {
    let freshness = flow
        .freshness
        .as_deref()
        .and_then(|f| crate::spec::parse_duration(f).ok())
        .map(|d| d.as_secs());
    let window = flow.retry.window_seconds.max(1);
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
        bar(
            format!("retry window {}", flow.retry.window),
            window,
            "#b91c1c"
        )
    );
    if let (Some(seconds), Some(text)) = (freshness, &flow.freshness) {
        out.push_str(&format!(
            "<div class=\"timeline\">{}</div>",
            bar(format!("freshness SLA {text}"), seconds, "#15803d")
        ));
    }
    out
}
