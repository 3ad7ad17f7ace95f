//! The evidence pack an architecture review asks for before go-live, built from a validated
//! workspace: the ownership matrix and field control, one page per flow with its path drawn as
//! inline SVG, the mapping table, contract fields, retry and deadline, SLAs, failure modes
//! with owner, action, runbook and escalation, and sample payloads from the flow tests; for a
//! reconcile flow its matching settings, rules and contracted rates, and each test case's
//! statement lines, ledger lines and expected variances. As
//! self-contained HTML (no script, no CDN; opens from `file://`) or as Markdown for a wiki.

pub mod facts;
pub mod html;
pub mod markdown;
pub mod svg;

use serde::Serialize;

pub use self::facts::{Facts, gather};

/// Everything a pack shows besides the workspace itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Context {
    /// The git revision the workspace was read at (`abc1234`, `abc1234-dirty`), if known.
    pub revision: Option<String>,
    /// The workspace spec version (`version:` of `switchyard.yaml`).
    pub spec_version: u32,
    /// Live figures from the state store (`--state`), if asked for.
    pub state: Option<StateFacts>,
}

/// Figures read from a state store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StateFacts {
    /// The store described (`sqlite:...`, `postgres://...` without secrets).
    pub store: String,
    /// Open dead letters: (flow, failure mode, owner, count).
    pub open_dead_letters: Vec<(String, String, String, u64)>,
    /// The latest audit entries, newest first: (time, flow, action, detail).
    pub recent: Vec<(String, String, String, String)>,
}

/// One file of a pack: path relative to the output folder, and content.
pub type PackFile = (String, String);
