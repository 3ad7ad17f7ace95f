//! `switchyard run`.

use std::process::ExitCode;

use clap::Args;

/// Arguments of `switchyard run`.
#[derive(Debug, Args)]
pub struct RunArgs {}

pub(crate) fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`switchyard run` is not built yet")
}
