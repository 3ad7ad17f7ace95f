//! `switchyard validate`: loads a workspace and prints every diagnostic.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::WorkspaceArg;
use super::output::{errln, out};
use crate::spec::diagnostic::{self, Diagnostic};
use crate::spec::{EnvLookup, LoadOptions, load_workspace};

/// Arguments of `switchyard validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    workspace: WorkspaceArg,
    /// How diagnostics are printed.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Treat unset `${ENV}` references as errors.
    #[arg(long)]
    strict: bool,
}

/// Output formats of `switchyard validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// `file:line:col: error[CODE]: message` lines and a summary.
    Human,
    /// A JSON array of diagnostics.
    Json,
    /// GitHub Actions annotations.
    Github,
}

pub(crate) fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let root = &args.workspace.workspace;
    if let Some(code) = check_workspace_folder(root) {
        return Ok(code);
    }
    let options = LoadOptions {
        strict: args.strict,
        env: EnvLookup::process(),
    };
    let loaded = load_workspace(root, &options);
    let diagnostics = loaded.diagnostics;
    let output = match args.format {
        Format::Human => {
            let mut text = diagnostic::render_human(&diagnostics);
            text.push_str(&diagnostic::summary(&diagnostics));
            text.push('\n');
            text
        }
        Format::Json => diagnostic::render_json(&diagnostics),
        Format::Github => diagnostic::render_github(&diagnostics),
    };
    out!("{output}")?;
    Ok(if diagnostics.iter().any(Diagnostic::is_error) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A missing workspace folder is a usage error (exit 2), not a finding.
pub(crate) fn check_workspace_folder(root: &Path) -> Option<ExitCode> {
    if root.is_dir() {
        return None;
    }
    errln!(
        "error: workspace folder {} does not exist or is not a folder",
        root.display()
    );
    Some(ExitCode::from(2))
}
