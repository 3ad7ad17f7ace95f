//! `switchyard validate`.

use std::process::ExitCode;

use clap::Args;

/// Arguments of `switchyard validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {}

pub(crate) fn run(_args: ValidateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`switchyard validate` is not built yet")
}
