//! `switchyard explain`.

use std::process::ExitCode;

use clap::Args;

/// Arguments of `switchyard explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {}

pub(crate) fn run(_args: ExplainArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`switchyard explain` is not built yet")
}
