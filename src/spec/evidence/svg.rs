//! A flow's path as an inline SVG, drawn at build time: source → contract → record steps →
//! map → sink → acknowledgement along the top, each failure mode hanging from the stage that
//! raises it and pointing at its owner (a reconcile flow: statement → reconcile ← ledger,
//! → report, its failure modes likewise). No script, no font or file fetched: it renders from
//! `file://` in any browser.

use std::fmt::Write as _;

use super::facts::{FlowFacts, ReconcileFacts};
use super::html::escape;

const BOX_W: usize = 150;
const BOX_H: usize = 46;
const GAP: usize = 34;
const TOP: usize = 20;

/// Where in the path a failure mode arises, as the index of a stage name.
fn stage_of(mode: &str, stages: &[(String, String)]) -> usize {
    let find = |label: &str| stages.iter().position(|(kind, _)| kind == label);
    let wanted = match mode {
        "source-unavailable" => "source",
        "contract-violation" | "duplicate" | "ownership-violation" => "contract",
        "mapping-error" => "map",
        "guard-unmet" | "enrichment-failed" | "check-failed" => "steps",
        "deadline-missed" => "ack",
        "reconciliation-variance" => "sink",
        _ => "sink",
    };
    find(wanted).or_else(|| find("sink")).unwrap_or(0)
}

/// The diagram of one flow.
pub fn flow_diagram(flow: &FlowFacts) -> String {
    if let Some(rec) = &flow.reconcile {
        return reconcile_diagram(flow, rec);
    }
    let mut stages: Vec<(String, String)> = vec![
        ("source".into(), format!("from {}", flow.from)),
        ("contract".into(), format!("contract: {}", flow.object)),
    ];
    let mut steps = Vec::new();
    if !flow.enrichments.is_empty() {
        steps.push("enrich");
    }
    if !flow.filters.is_empty() {
        steps.push("where");
    }
    if flow.guard.is_some() {
        steps.push("requires");
    }
    if flow.split.is_some() {
        steps.push("split");
    }
    if !steps.is_empty() {
        stages.push(("steps".into(), steps.join(" · ")));
    }
    stages.push(("map".into(), format!("map: {} fields", flow.mapping.len())));
    if let Some(to) = &flow.to {
        stages.push(("sink".into(), format!("to {to}")));
    }
    if let Some(ack) = &flow.acknowledge {
        stages.push(("ack".into(), format!("acknowledge at {ack}")));
    }
    let owners = owners_of(flow);
    let columns = stages
        .len()
        .max(flow.failures.len())
        .max(owners.len())
        .max(1);
    let width = columns * (BOX_W + GAP) + GAP;
    let failure_y = TOP + BOX_H + 70;
    let owner_y = failure_y + BOX_H + 70;
    let height = if flow.failures.is_empty() {
        TOP + BOX_H + 20
    } else {
        owner_y + BOX_H + 20
    };
    let mut svg = open_svg(&format!("Path of flow {}", flow.name), width, height);
    for (i, (kind, label)) in stages.iter().enumerate() {
        let fill = match kind.as_str() {
            "source" | "sink" | "ack" => "#dbeafe",
            _ => "#f1f5f9",
        };
        rect(
            &mut svg,
            x_of(i),
            TOP,
            fill,
            "#334155",
            label,
            &format!("stage stage-{kind}"),
        );
        if i + 1 < stages.len() {
            line(
                &mut svg,
                x_of(i) + BOX_W,
                TOP + BOX_H / 2,
                x_of(i + 1),
                TOP + BOX_H / 2,
                "#555",
                false,
            );
        }
    }
    failures_to_owners(&mut svg, flow, &owners, failure_y, owner_y, |mode| {
        (x_of(stage_of(mode, &stages)) + BOX_W / 2, TOP + BOX_H)
    });
    svg.push_str("</svg>");
    svg
}

/// A reconcile flow: statement → reconcile ← ledger along the top, the report under the
/// reconcile box, and each failure mode hanging from where it arises (a side that cannot be
/// read, or a variance in the report) and pointing at its owner.
fn reconcile_diagram(flow: &FlowFacts, rec: &ReconcileFacts) -> String {
    let owners = owners_of(flow);
    let columns = 3.max(flow.failures.len()).max(owners.len());
    let width = columns * (BOX_W + GAP) + GAP;
    let report_y = TOP + BOX_H + 50;
    let failure_y = report_y + BOX_H + 70;
    let owner_y = failure_y + BOX_H + 70;
    let height = if flow.failures.is_empty() {
        report_y + BOX_H + 20
    } else {
        owner_y + BOX_H + 20
    };
    let mut svg = open_svg(
        &format!("Path of reconcile flow {}", flow.name),
        width,
        height,
    );
    let mid = TOP + BOX_H / 2;
    rect(
        &mut svg,
        x_of(0),
        TOP,
        "#dbeafe",
        "#334155",
        &format!("statement: {}", rec.statement.system),
        "stage stage-source",
    );
    rect(
        &mut svg,
        x_of(1),
        TOP,
        "#f1f5f9",
        "#334155",
        &format!("reconcile {}", rec.strategy),
        "stage stage-reconcile",
    );
    rect(
        &mut svg,
        x_of(2),
        TOP,
        "#dbeafe",
        "#334155",
        &format!("ledger: {}", rec.ledger.system),
        "stage stage-ledger",
    );
    line(&mut svg, x_of(0) + BOX_W, mid, x_of(1), mid, "#555", false);
    line(&mut svg, x_of(2), mid, x_of(1) + BOX_W, mid, "#555", false);
    rect(
        &mut svg,
        x_of(1),
        report_y,
        "#dcfce7",
        "#334155",
        "report: totals·variances",
        "stage stage-report",
    );
    line(
        &mut svg,
        x_of(1) + BOX_W / 2,
        TOP + BOX_H,
        x_of(1) + BOX_W / 2,
        report_y,
        "#555",
        false,
    );
    failures_to_owners(&mut svg, flow, &owners, failure_y, owner_y, |mode| {
        // A side that cannot be read stops the run before any matching: it hangs from the
        // statement; every other mode is a variance the report found.
        if mode == "source-unavailable" {
            (x_of(0) + BOX_W / 2, TOP + BOX_H)
        } else {
            (x_of(1) + BOX_W / 2, report_y + BOX_H)
        }
    });
    svg.push_str("</svg>");
    svg
}

/// The left edge of column `i`.
fn x_of(i: usize) -> usize {
    GAP + i * (BOX_W + GAP)
}

/// The owners of a flow's failure modes, each once, in the order the modes name them.
fn owners_of(flow: &FlowFacts) -> Vec<&str> {
    let mut owners: Vec<&str> = Vec::new();
    for failure in &flow.failures {
        if !owners.contains(&failure.owner.as_str()) {
            owners.push(&failure.owner);
        }
    }
    owners
}

/// The opening `<svg>` of a diagram, with its arrow head.
fn open_svg(label: &str, width: usize, height: usize) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="flow-diagram" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"##,
        escape(label)
    );
    svg.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>"##);
    svg
}

/// Each failure mode in a row at `failure_y`, hanging from the point `from` gives for its
/// mode and pointing at its owner, and the owners in a row at `owner_y`.
fn failures_to_owners(
    svg: &mut String,
    flow: &FlowFacts,
    owners: &[&str],
    failure_y: usize,
    owner_y: usize,
    from: impl Fn(&str) -> (usize, usize),
) {
    for (i, failure) in flow.failures.iter().enumerate() {
        let (from_x, from_y) = from(&failure.mode);
        line(
            svg,
            from_x,
            from_y,
            x_of(i) + BOX_W / 2,
            failure_y,
            "#b91c1c",
            true,
        );
        rect(
            svg,
            x_of(i),
            failure_y,
            "#fee2e2",
            "#b91c1c",
            &failure.mode,
            "failure",
        );
        let owner = owners.iter().position(|o| *o == failure.owner).unwrap_or(0);
        line(
            svg,
            x_of(i) + BOX_W / 2,
            failure_y + BOX_H,
            x_of(owner) + BOX_W / 2,
            owner_y,
            "#92400e",
            false,
        );
    }
    for (i, owner) in owners.iter().enumerate() {
        let label = format!("owner: {owner}");
        rect(svg, x_of(i), owner_y, "#fef3c7", "#92400e", &label, "owner");
    }
}

fn rect(svg: &mut String, x: usize, y: usize, fill: &str, stroke: &str, label: &str, class: &str) {
    let shown: String = if label.chars().count() > 24 {
        let cut: String = label.chars().take(23).collect();
        format!("{cut}…")
    } else {
        label.to_owned()
    };
    let _ = write!(
        svg,
        r#"<g class="{class}"><title>{}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="{stroke}"/><text x="{}" y="{}" text-anchor="middle">{}</text></g>"#,
        escape(label),
        x + BOX_W / 2,
        y + BOX_H / 2 + 4,
        escape(&shown)
    );
}

#[allow(clippy::too_many_arguments)]
fn line(svg: &mut String, x1: usize, y1: usize, x2: usize, y2: usize, colour: &str, dashed: bool) {
    let _ = write!(
        svg,
        r#"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}" stroke-width="1.5"{} marker-end="url(#arrow)"/>"#,
        if dashed {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        }
    );
}
