//! `switchyard test`.

use std::process::ExitCode;

use clap::Args;

/// Arguments of `switchyard test`.
#[derive(Debug, Args)]
pub struct TestArgs {}

pub(crate) fn run(_args: TestArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`switchyard test` is not built yet")
}
