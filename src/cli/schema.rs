//! `switchyard schema`.

use std::process::ExitCode;

use clap::Args;

/// Arguments of `switchyard schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {}

pub(crate) fn run(_args: SchemaArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`switchyard schema` is not built yet")
}
