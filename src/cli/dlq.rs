//! `switchyard dlq`.

use std::process::ExitCode;

use clap::Args;

/// Arguments of `switchyard dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {}

pub(crate) fn run(_args: DlqArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`switchyard dlq` is not built yet")
}
