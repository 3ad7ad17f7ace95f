//! `switchyard explain`: prints the ownership matrix and a summary of each flow.

use std::process::ExitCode;

use clap::Args;

use super::WorkspaceArg;
use super::output::{err, errln, out};
use crate::spec::diagnostic;
use crate::spec::{LoadOptions, load_workspace};

/// Arguments of `switchyard explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    workspace: WorkspaceArg,
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
    out!("{}", crate::spec::explain::explain(&workspace))?;
    Ok(ExitCode::SUCCESS)
}
