//! `switchyard docs [WS] --out DIR`: writes the evidence pack (see
//! [`crate::spec::evidence`]) as self-contained HTML, or Markdown for a wiki.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indexmap::IndexMap;

use super::WorkspaceArg;
use super::output::{err, errln};
use crate::spec::evidence::{self, Context, StateFacts};
use crate::spec::{EnvLookup, LoadOptions, diagnostic, load_workspace};
use crate::store::{Store, StoreTarget};

/// Arguments of `switchyard docs`.
#[derive(Debug, Args)]
pub struct DocsArgs {
    #[command(flatten)]
    workspace: WorkspaceArg,
    /// The folder the pack is written into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// HTML pages, or Markdown for a wiki.
    #[arg(long, value_enum, default_value_t = Format::Html)]
    format: Format,
    /// Add open dead letters per owner and recent activity from the state store: the
    /// workspace's own, or the one named (a SQLite path or a postgres:// URL).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    state: Option<String>,
}

/// Pack formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `index.html` and one page per flow.
    Html,
    /// `index.md`, one page per flow and its diagram as SVG.
    Markdown,
}

pub(crate) fn run(args: DocsArgs) -> anyhow::Result<ExitCode> {
    let root = &args.workspace.workspace;
    if let Some(code) = super::validate::check_workspace_folder(root) {
        return Ok(code);
    }
    // The pack calls no system: credentials may be unset.
    let loaded = load_workspace(
        root,
        &LoadOptions {
            env: EnvLookup::process().offline(),
            ..LoadOptions::default()
        },
    );
    let Some(workspace) = loaded.workspace else {
        err!("{}", diagnostic::render_human(&loaded.diagnostics));
        errln!(
            "{} has errors ({}); an evidence pack documents a workspace that can run",
            root.display(),
            diagnostic::summary(&loaded.diagnostics)
        );
        return Ok(ExitCode::from(1));
    };
    let mut raw_flows = IndexMap::new();
    for flow in workspace.flows.values() {
        let text = std::fs::read_to_string(root.join(&flow.file))
            .with_context(|| format!("cannot read {}", root.join(&flow.file).display()))?;
        if let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(&text) {
            raw_flows.insert(flow.name.clone(), value);
        }
    }
    let facts = evidence::gather(&workspace, &raw_flows);
    let state = match &args.state {
        None => None,
        Some(named) => Some(super::tokio_runtime()?.block_on(state_facts(
            if named.is_empty() {
                None
            } else {
                Some(named.as_str())
            },
            &workspace.state,
        ))?),
    };
    let context = Context {
        revision: revision(root),
        spec_version: spec_version(root),
        state,
    };
    let files = match args.format {
        Format::Html => evidence::html::pack(&facts, &context),
        Format::Markdown => evidence::markdown::pack(&facts, &context),
    };
    for (relative, content) in &files {
        let path = args.out.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    errln!(
        "Wrote the evidence pack of {} ({} flows) to {}",
        facts.name,
        facts.flows.len(),
        args.out.join(&files[0].0).display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn state_facts(named: Option<&str>, own: &StoreTarget) -> anyhow::Result<StateFacts> {
    let target = StoreTarget::choose(named, Some(own))?;
    if let Some(path) = target.sqlite_path().filter(|path| !path.exists()) {
        anyhow::bail!(
            "no state file at {}: no flow has run in this workspace yet",
            path.display()
        );
    }
    let store = Store::open_target(&target).await?;
    let recent = store
        .audit_trail(20)
        .await?
        .into_iter()
        .map(|entry| {
            (
                entry.at,
                entry.flow.unwrap_or_default(),
                entry.action,
                crate::spec::diff::show_value(&entry.detail),
            )
        })
        .collect();
    Ok(StateFacts {
        store: store.describe(),
        open_dead_letters: store.open_dead_letter_counts().await?,
        recent,
    })
}

/// The commit the workspace was read at, marked `-dirty` when its folder has changes.
fn revision(root: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--", "."]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

fn spec_version(root: &Path) -> u32 {
    std::fs::read_to_string(root.join(crate::spec::load::WORKSPACE_FILE))
        .ok()
        .and_then(|text| serde_saphyr::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64))
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(1)
}
