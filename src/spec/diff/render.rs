//! The report in four forms: `human` for a terminal, `markdown` for a pull-request comment,
//! `json` for tools and `github` for annotations on the changed lines.

use std::fmt::Write as _;
use std::path::Path;

use super::{Change, Group, Report, Risk};
use crate::spec::diagnostic::{escape_data, escape_property};

/// `3 high, 1 medium, 2 low (6 changes)` or `no semantic changes`.
pub fn summary(report: &Report) -> String {
    let (high, medium, low) = report.counts();
    let total = report.changes.len();
    if total == 0 {
        return "no semantic changes".into();
    }
    format!(
        "{high} high, {medium} medium, {low} low ({total} change{})",
        if total == 1 { "" } else { "s" }
    )
}

fn arrow(change: &Change) -> String {
    match (&change.before, &change.after) {
        (Some(b), Some(a)) => format!("{b} → {a}"),
        (None, Some(a)) => format!("+ {a}"),
        (Some(b), None) => format!("- {b}"),
        (None, None) => String::new(),
    }
}

/// Grouped text, most severe first; ANSI colours when `colour` is set.
pub fn human(report: &Report, colour: bool) -> String {
    let paint = |risk: Risk, text: &str| {
        if !colour {
            return text.to_owned();
        }
        let code = match risk {
            Risk::High => "1;31",
            Risk::Medium => "33",
            Risk::Low => "36",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    };
    let mut out = format!("switchyard diff {} → {}\n", report.base, report.head);
    let mut current: Option<&Group> = None;
    for change in &report.changes {
        if current != Some(&change.group) {
            let _ = writeln!(out, "\n{}", change.group);
            current = Some(&change.group);
        }
        let _ = writeln!(
            out,
            "  {:<6} {:<30} {}",
            paint(change.risk, change.risk.as_str()),
            change.check,
            change.reason
        );
        let shown = arrow(change);
        if !shown.is_empty() {
            let _ = writeln!(out, "         {:<30} {}: {shown}", "", change.subject);
        }
        if let Some(at) = &change.location {
            let _ = writeln!(
                out,
                "         {:<30} at {}:{}",
                "",
                at.file.display(),
                at.line
            );
        }
    }
    let _ = writeln!(out, "\n{}", summary(report));
    out
}

/// A pull-request comment: a summary line, one table row per change most severe first, and
/// the old and new values folded away.
pub fn markdown(report: &Report) -> String {
    let mut out = format!(
        "### Switchyard: {}\n\n`{}` → `{}`\n",
        summary(report),
        report.base,
        report.head
    );
    if report.changes.is_empty() {
        return out;
    }
    out.push_str("\n| Risk | Check | Where | Change |\n|---|---|---|---|\n");
    for change in &report.changes {
        let icon = match change.risk {
            Risk::High => "🔴 high",
            Risk::Medium => "🟠 medium",
            Risk::Low => "🔵 low",
        };
        let _ = writeln!(
            out,
            "| {icon} | `{}` | {} | {} |",
            change.check,
            cell(&change.group.to_string()),
            cell(&change.reason)
        );
    }
    out.push_str("\n<details><summary>Old and new values</summary>\n\n");
    for change in &report.changes {
        let _ = writeln!(
            out,
            "- **{}** `{}` {}",
            change.check,
            cell(&change.subject),
            match &change.location {
                Some(at) => format!("({}:{})", at.file.display(), at.line),
                None => String::new(),
            }
        );
        if let Some(before) = &change.before {
            let _ = writeln!(out, "  - before: `{}`", code(before));
        }
        if let Some(after) = &change.after {
            let _ = writeln!(out, "  - after: `{}`", code(after));
        }
    }
    out.push_str("\n</details>\n");
    out
}

/// One Markdown table cell: pipes and line breaks would end it.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn code(text: &str) -> String {
    text.replace('`', "'").replace('\n', " ")
}

/// The report as JSON: labels, counts and every change.
pub fn json(report: &Report) -> String {
    let (high, medium, low) = report.counts();
    let value = serde_json::json!({
        "base": report.base,
        "head": report.head,
        "summary": { "high": high, "medium": medium, "low": low, "total": report.changes.len() },
        "changes": report.changes,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

/// GitHub workflow commands annotating HEAD's files; `prefix` is the workspace folder relative
/// to the repository root, so the paths are what GitHub shows.
pub fn github(report: &Report, prefix: &Path) -> String {
    let mut out = String::new();
    for change in &report.changes {
        let level = match change.risk {
            Risk::High => "error",
            Risk::Medium => "warning",
            Risk::Low => "notice",
        };
        let (file, line) = match &change.location {
            Some(at) => (prefix.join(&at.file), at.line),
            None => (prefix.join(crate::spec::load::WORKSPACE_FILE), 1),
        };
        let shown = arrow(change);
        let message = if shown.is_empty() {
            change.reason.clone()
        } else {
            format!("{} ({}: {shown})", change.reason, change.subject)
        };
        let _ = writeln!(
            out,
            "::{level} file={},line={line},title={}::{}",
            escape_property(&file.display().to_string()),
            escape_property(&format!("{} ({})", change.check, change.risk)),
            escape_data(&message)
        );
    }
    out
}
