//! `switchyard schema`: writes the JSON Schemas of the spec files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::spec::schema;

/// Arguments of `switchyard schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Folder the schemas are written to (created if missing).
    #[arg(long, default_value = "schemas")]
    out: PathBuf,
}

pub(crate) fn run(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for (name, value) in schema::schemas() {
        let path = args.out.join(name);
        std::fs::write(&path, schema::render(&value))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
