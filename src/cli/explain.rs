//! `switchyard explain`: prints the ownership matrix and a summary of each flow.

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::WorkspaceArg;
use super::output::{err, errln, out};
use crate::spec::diagnostic;
use crate::spec::{LoadOptions, load_workspace};

/// Arguments of `switchyard explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    workspace: WorkspaceArg,
    /// Text for a terminal (wrapped to its width), Markdown, or the facts as JSON.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// Output formats of `switchyard explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Tables and one paragraph per flow.
    Human,
    /// One Markdown document: ownership, field control, per flow its mapping and failures.
    Markdown,
    /// Every fact the evidence pack shows, as JSON.
    Json,
}

pub(crate) fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let root = &args.workspace.workspace;
    if let Some(code) = super::validate::check_workspace_folder(root) {
        return Ok(code);
    }
    // Explaining calls no system: credentials may be unset.
    let loaded = load_workspace(
        root,
        &LoadOptions {
            env: crate::spec::EnvLookup::process().offline(),
            ..LoadOptions::default()
        },
    );
    let Some(workspace) = loaded.workspace else {
        // Explaining a broken workspace would explain something that cannot run.
        err!("{}", diagnostic::render_human(&loaded.diagnostics));
        errln!("{}", diagnostic::summary(&loaded.diagnostics));
        return Ok(ExitCode::from(1));
    };
    let text = match args.format {
        Format::Human => {
            let text = crate::spec::explain::explain(&workspace);
            match terminal_width() {
                Some(width) => crate::spec::explain::wrap(&text, width),
                None => text,
            }
        }
        Format::Markdown | Format::Json => {
            let mut raw_flows = indexmap::IndexMap::new();
            for flow in workspace.flows.values() {
                if let Some(value) = std::fs::read_to_string(root.join(&flow.file))
                    .ok()
                    .and_then(|t| serde_saphyr::from_str::<serde_json::Value>(&t).ok())
                {
                    raw_flows.insert(flow.name.clone(), value);
                }
            }
            let facts = crate::spec::evidence::gather(&workspace, &raw_flows);
            if args.format == Format::Json {
                serde_json::to_string_pretty(&facts)? + "\n"
            } else {
                crate::spec::evidence::markdown::document(&facts)
            }
        }
    };
    out!("{text}")?;
    Ok(ExitCode::SUCCESS)
}

/// The width to wrap to when stdout is a terminal (`$COLUMNS`, else 100).
fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    Some(
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .filter(|w| *w >= 40)
            .unwrap_or(100),
    )
}
