//! `switchyard sandbox`.

use std::process::ExitCode;

use clap::Args;

/// Arguments of `switchyard sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {}

pub(crate) fn run(_args: SandboxArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`switchyard sandbox` is not built yet")
}
