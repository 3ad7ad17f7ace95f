//! The evidence pack as Markdown for a wiki (`docs --format markdown`), and the same facts as
//! one Markdown document (`explain --format markdown`).

use std::fmt::Write as _;

use super::facts::{Facts, FlowFacts, ReconcileFacts};
use super::{Context, PackFile};

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The ownership matrix, field control and flow index as Markdown.
pub fn overview(facts: &Facts) -> String {
    let mut out = String::from(
        "## Ownership\n\nSoT = source of truth, C = may create, U = may update, consume = reads only.\n\n| object |",
    );
    for system in &facts.systems {
        let _ = write!(out, " {} |", cell(&system.name));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(facts.systems.len()));
    out.push('\n');
    for object in &facts.objects {
        let _ = write!(out, "| {} |", cell(&object.name));
        for system in &facts.systems {
            let s = &system.name;
            let mut roles = Vec::new();
            if &object.source_of_truth == s {
                roles.push("**SoT**");
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
                out,
                " {} |",
                if roles.is_empty() {
                    "–".into()
                } else {
                    roles.join(" ")
                }
            );
        }
        out.push('\n');
    }
    out.push_str("\n## Field control\n\n");
    let fields: Vec<String> = facts
        .objects
        .iter()
        .flat_map(|o| {
            o.fields.iter().map(move |f| {
                format!(
                    "| `{}.{}` | {} | {} |\n",
                    o.name,
                    f.field,
                    f.controlled_by,
                    if f.operator_override { "yes" } else { "no" }
                )
            })
        })
        .collect();
    if fields.is_empty() {
        out.push_str("No per-field control is declared.\n");
    } else {
        out.push_str("| field | controlled by | operator may override |\n|---|---|---|\n");
        out.push_str(&fields.concat());
    }
    out
}

/// One flow as Markdown; `diagram` is an image reference to include, if any.
pub fn flow(flow: &FlowFacts, diagram: Option<&str>) -> String {
    // A reconcile flow's summary has a line per part (matching, each rule and rate): each
    // its own paragraph, as on the terminal.
    let mut out = format!(
        "## Flow {}\n\n{}\n\n",
        flow.name,
        flow.summary.replace('\n', "\n\n")
    );
    if let Some(diagram) = diagram {
        let _ = writeln!(out, "![path of {}]({diagram})\n", flow.name);
    }
    if let Some(key) = &flow.idempotency_key {
        let _ = writeln!(out, "Idempotency key: `{key}`\n");
    }
    if !flow.mapping.is_empty() {
        out.push_str("| output field | from | type |\n|---|---|---|\n");
        for field in &flow.mapping {
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} |",
                cell(&field.field),
                cell(&field.source),
                field.kind.as_deref().unwrap_or("as rendered")
            );
        }
        out.push('\n');
    }
    if let Some(retry) = &flow.retry {
        let _ = writeln!(
            out,
            "Retry: {} backoff from {} up to {} apart, for {}.\n",
            retry.backoff, retry.initial, retry.max_delay, retry.window
        );
    }
    if let Some(rec) = &flow.reconcile {
        out.push_str(&reconcile_tables(rec));
    }
    out.push_str(
        "| failure mode | owner | action | runbook | escalation |\n|---|---|---|---|---|\n",
    );
    for failure in &flow.failures {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            failure.mode,
            failure.owner,
            failure.action.as_deref().unwrap_or("–"),
            cell(failure.runbook.as_deref().unwrap_or("no runbook")),
            failure.escalate.as_deref().unwrap_or("–")
        );
    }
    for sample in flow.samples.iter().take(3) {
        let _ = writeln!(
            out,
            "\n<details><summary>Sample: {}</summary>\n",
            cell(&sample.case)
        );
        for (label, value) in [
            ("input", &sample.input),
            ("output", &sample.output),
            ("dead letter", &sample.dead_letter),
            ("alert", &sample.alert),
        ] {
            if let Some(value) = value {
                let _ = writeln!(
                    out,
                    "{label}:\n\n```json\n{}\n```\n",
                    serde_json::to_string_pretty(value).unwrap_or_default()
                );
            }
        }
        for (label, lines) in [
            ("statement lines", &sample.statement),
            ("ledger lines", &sample.ledger),
        ] {
            if !lines.is_empty() {
                let _ = writeln!(
                    out,
                    "{label}:\n\n```json\n{}\n```\n",
                    super::html::json_lines(lines)
                );
            }
        }
        match sample.variances.as_deref() {
            Some([]) => out.push_str("expected variances: none (every cycle ties out)\n\n"),
            Some(variances) => {
                let _ = writeln!(
                    out,
                    "expected variances:\n\n```json\n{}\n```\n",
                    super::html::json_lines(variances)
                );
            }
            None => {}
        }
        out.push_str("</details>\n");
    }
    out
}

/// The matching settings, rules and contracted rates of a reconcile flow.
fn reconcile_tables(rec: &ReconcileFacts) -> String {
    let code = |text: &str| {
        if text.is_empty() {
            "–".to_owned()
        } else {
            format!("`{}`", cell(text))
        }
    };
    let mut out = String::from("| setting | statement | ledger |\n|---|---|---|\n");
    let _ = writeln!(
        out,
        "| read from | {} ({}): {} | {} ({}): {} |",
        rec.statement.system,
        rec.statement.connector,
        cell(&rec.statement.location),
        rec.ledger.system,
        rec.ledger.connector,
        cell(&rec.ledger.location)
    );
    for (name, pair) in [
        ("join key", &rec.key),
        ("billing cycle", &rec.cycle),
        ("amount", &rec.amount),
        ("currency", &rec.currency),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} |",
            code(&pair.statement),
            code(&pair.ledger)
        );
    }
    if let Some(line) = &rec.ledger_line {
        let _ = writeln!(out, "| ledger line ID | – | {} |", code(line));
    }
    if let Some(window) = &rec.date_window {
        let _ = writeln!(
            out,
            "| dates (within {}) | {} | {} |",
            window.window,
            code(&window.statement),
            code(&window.ledger)
        );
    }
    if let Some(dates) = &rec.line_date {
        let _ = writeln!(
            out,
            "| line date (ages) | {} | {} |",
            code(&dates.statement),
            code(&dates.ledger)
        );
    }
    let _ = writeln!(
        out,
        "\nStrategy `{}`: {}\n\n{}\n",
        rec.strategy, rec.strategy_words, rec.tolerance_words
    );
    if !rec.tolerance.is_empty() {
        out.push_str("| currency | largest difference matched |\n|---|---|\n");
        for t in &rec.tolerance {
            let _ = writeln!(out, "| {} | {} |", t.currency, t.amount);
        }
        out.push('\n');
    }
    if !rec.rules.is_empty() {
        out.push_str("| rule | when | ledger field | expected | breach | owner |\n|---|---|---|---|---|---|\n");
        for rule in &rec.rules {
            let expected: Vec<String> = rule
                .expect
                .iter()
                .map(|e| format!("`{}` = {} → {}", rule.by, cell(&e.when), cell(&e.expect)))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {} | {} ({}) | {} |",
                rule.name,
                cell(rule.when.as_deref().unwrap_or("every matched line")),
                rule.ledger_field,
                expected.join("; "),
                rule.variance,
                rule.failure,
                rule.owner
            );
        }
        out.push('\n');
    }
    if !rec.rates.is_empty() {
        out.push_str("| rate | charged lines | base lines | per | by | rate table | sign | rounding | tolerance | breach | owner |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        for rate in &rec.rates {
            let mut table: Vec<String> = rate
                .contracted
                .iter()
                .map(|c| format!("{}: {}", cell(&c.when), c.expect))
                .collect();
            table.push(match &rate.default {
                Some(default) => format!("default: {default}"),
                None => "no default (unlisted values breach)".to_owned(),
            });
            let tolerance: Vec<String> = rate
                .tolerance
                .iter()
                .map(|t| format!("{} {}", t.currency, t.amount))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | `{}` | {} | {} | {} | {} | {} | {} ({}) | {} |",
                rate.name,
                cell(&rate.charged),
                cell(&rate.base),
                rate.per,
                rate.by
                    .as_deref()
                    .map(&code)
                    .unwrap_or_else(|| "–".to_owned()),
                table.join("; "),
                rate.sign,
                rate.rounding,
                if tolerance.is_empty() {
                    "exact".to_owned()
                } else {
                    tolerance.join("; ")
                },
                rate.variance,
                rate.failure,
                rate.owner
            );
        }
        out.push('\n');
    }
    out
}

/// Everything in one document (`explain --format markdown`).
pub fn document(facts: &Facts) -> String {
    let mut out = format!("# {}\n\n{}", facts.name, overview(facts));
    for f in &facts.flows {
        out.push('\n');
        out.push_str(&flow(f, None));
    }
    out
}

/// The pack as Markdown files, with each diagram as an SVG file beside its page.
pub fn pack(facts: &Facts, context: &Context) -> Vec<PackFile> {
    let mut index = format!(
        "# {} — evidence pack\n\nSpec version {}; git revision {}.\n\n{}\n## Flows\n\n",
        facts.name,
        context.spec_version,
        context.revision.as_deref().unwrap_or("unknown"),
        overview(facts)
    );
    let mut files = Vec::new();
    for f in &facts.flows {
        let _ = writeln!(
            index,
            "- [{0}](flows/{0}.md): {1}, {2}",
            f.name,
            f.object,
            f.path()
        );
        files.push((format!("flows/{}.svg", f.name), super::svg::flow_diagram(f)));
        files.push((
            format!("flows/{}.md", f.name),
            flow(f, Some(&format!("{}.svg", f.name))),
        ));
    }
    if let Some(state) = &context.state {
        let _ = write!(
            index,
            "\n## Open dead letters ({})\n\n| owner | flow | failure mode | open |\n|---|---|---|---|\n",
            state.store
        );
        for (flow, mode, owner, count) in &state.open_dead_letters {
            let _ = writeln!(index, "| {owner} | {flow} | {mode} | {count} |");
        }
    }
    files.insert(0, ("index.md".into(), index));
    files
}
