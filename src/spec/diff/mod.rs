//! `switchyard diff`: what a spec change *means*. Both sides are parsed to JSON ([`side`]) and
//! compared object by object and flow by flow; every difference becomes a [`Change`] carrying a
//! check from the catalog ([`checks`]) with its risk, a one-line reason and where it sits in the
//! HEAD files, so a reviewer reads "source of truth of offer moved from marketplace to
//! storefront (high)" instead of a YAML text diff.

pub mod checks;
mod contract;
mod flow;
mod levels;
pub mod render;
pub mod side;
mod workspace;

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

pub use self::checks::{Check, Risk};
pub use self::levels::{LEVELS_FILE, Levels, LevelsError};
pub use self::side::Side;

/// What part of the workspace a change belongs to; the report groups by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Group {
    /// `switchyard.yaml`'s defaults and anything workspace-wide.
    Workspace,
    /// A system.
    System(String),
    /// An owner.
    Owner(String),
    /// A business object (ownership, key, contract).
    Object(String),
    /// A flow.
    Flow(String),
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Group::Workspace => f.write_str("workspace"),
            Group::System(name) => write!(f, "system {name}"),
            Group::Owner(name) => write!(f, "owner {name}"),
            Group::Object(name) => write!(f, "object {name}"),
            Group::Flow(name) => write!(f, "flow {name}"),
        }
    }
}

/// Where a change sits in the HEAD side's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// File, relative to the workspace folder.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// One semantic change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The check's stable ID.
    pub check: &'static str,
    /// Its risk, after the repository's overrides.
    pub risk: Risk,
    /// What it belongs to.
    pub group: Group,
    /// The setting, as a short path (`map.price`, `failures.sink-unavailable.owner`).
    pub subject: String,
    /// The old value, rendered; `None` when added.
    pub before: Option<String>,
    /// The new value, rendered; `None` when removed.
    pub after: Option<String>,
    /// One line saying what it means.
    pub reason: String,
    /// Where it is in HEAD (for removals, the nearest place that still exists).
    pub location: Option<Location>,
}

/// The comparison of two sides.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// BASE's label.
    pub base: String,
    /// HEAD's label.
    pub head: String,
    /// Every change, most severe first, grouped.
    pub changes: Vec<Change>,
}

impl Report {
    /// Changes at each risk: (high, medium, low).
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |risk| self.changes.iter().filter(|c| c.risk == risk).count();
        (count(Risk::High), count(Risk::Medium), count(Risk::Low))
    }

    /// The most severe risk found.
    pub fn worst(&self) -> Option<Risk> {
        self.changes.iter().map(|c| c.risk).max()
    }
}

/// Compares BASE with HEAD, applying `levels` (overridden or silenced checks).
pub fn compare(base: &Side, head: &Side, levels: &Levels) -> Report {
    let mut found = Collector {
        head,
        changes: Vec::new(),
    };
    workspace::compare(base, head, &mut found);
    flow::compare(base, head, &mut found);
    let mut changes: Vec<Change> = found
        .changes
        .into_iter()
        .filter_map(|mut change| {
            change.risk = levels.risk_of(change.check)?;
            Some(change)
        })
        .collect();
    // Groups most severe first, then each group's changes most severe first; ties keep the
    // order the spec declares them in.
    let worst_of = |group: &Group, changes: &[Change]| {
        changes
            .iter()
            .filter(|c| &c.group == group)
            .map(|c| c.risk)
            .max()
    };
    let snapshot = changes.clone();
    let mut first_seen: Vec<Group> = Vec::new();
    for change in &snapshot {
        if !first_seen.contains(&change.group) {
            first_seen.push(change.group.clone());
        }
    }
    changes.sort_by(|a, b| {
        let group_rank = |g: &Group| {
            (
                std::cmp::Reverse(worst_of(g, &snapshot)),
                first_seen.iter().position(|x| x == g),
            )
        };
        group_rank(&a.group)
            .cmp(&group_rank(&b.group))
            .then(b.risk.cmp(&a.risk))
    });
    Report {
        base: base.label.clone(),
        head: head.label.clone(),
        changes,
    }
}

/// Gathers changes while the comparisons walk both sides.
pub(crate) struct Collector<'a> {
    head: &'a Side,
    changes: Vec<Change>,
}

impl Collector<'_> {
    /// Records a change. `at` is (file of HEAD, pointer) of the changed node; for a removal, the
    /// pointer of what held it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
        &mut self,
        check: &'static Check,
        group: Group,
        subject: impl Into<String>,
        before: Option<&Value>,
        after: Option<&Value>,
        reason: impl Into<String>,
        at: Option<(&side::Doc, &str)>,
    ) {
        let location = at.map(|(doc, pointer)| locate(doc, pointer));
        self.changes.push(Change {
            check: check.id,
            risk: check.risk,
            group,
            subject: subject.into(),
            before: before.map(show),
            after: after.map(show),
            reason: reason.into(),
            location,
        });
    }

    /// HEAD's workspace file.
    pub(crate) fn head_workspace(&self) -> &side::Doc {
        &self.head.workspace
    }
}

/// The position of `pointer` in `doc`, or of its nearest ancestor that exists.
fn locate(doc: &side::Doc, pointer: &str) -> Location {
    let mut current = pointer.to_owned();
    loop {
        if let Some(node) = doc.map.get(&current) {
            return Location {
                file: doc.file.clone(),
                line: node.key.0.max(1),
                column: node.key.1.max(1),
            };
        }
        match current.rfind('/') {
            Some(cut) if !current.is_empty() => current.truncate(cut),
            _ => {
                return Location {
                    file: doc.file.clone(),
                    line: 1,
                    column: 1,
                };
            }
        }
    }
}

/// A value as a reviewer reads it: strings bare, the rest as compact JSON, long ones cut.
pub fn show_value(value: &Value) -> String {
    show(value)
}

pub(crate) fn show(value: &Value) -> String {
    const MAX: usize = 120;
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// JSON Pointer escaping of one segment.
pub(crate) fn seg(name: &str) -> String {
    crate::spec::source_map::escape(name)
}

/// The differing leaves of two values, as (pointer below them, old, new): objects by key,
/// equal-length arrays by index; anything else differs as a whole. A reviewer reads
/// `request.path: /a → /b` rather than two whole blocks.
pub(crate) fn leaves(
    old: Option<&Value>,
    new: Option<&Value>,
) -> Vec<(String, Option<Value>, Option<Value>)> {
    fn walk(
        old: Option<&Value>,
        new: Option<&Value>,
        at: String,
        out: &mut Vec<(String, Option<Value>, Option<Value>)>,
    ) {
        if old == new {
            return;
        }
        match (old, new) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                let mut keys: Vec<&String> = a.keys().collect();
                keys.extend(b.keys().filter(|k| !a.contains_key(*k)));
                for key in keys {
                    walk(a.get(key), b.get(key), format!("{at}/{}", seg(key)), out);
                }
            }
            (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(Some(x), Some(y), format!("{at}/{i}"), out);
                }
            }
            _ => out.push((at, old.cloned(), new.cloned())),
        }
    }
    let mut out = Vec::new();
    walk(old, new, String::new(), &mut out);
    out
}

/// A pointer below a setting as a dotted path (`/request/path` -> `.request.path`).
pub(crate) fn dotted(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|s| format!(".{}", s.replace("~1", "/").replace("~0", "~")))
        .collect()
}
