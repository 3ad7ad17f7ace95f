//! `switchyard test`: runs the flow test cases declared under the workspace's `tests/`.

use std::process::ExitCode;

use clap::Args;

use super::WorkspaceArg;
use super::output::outln;
use crate::flowtest;
use crate::spec::EnvLookup;

/// Arguments of `switchyard test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    workspace: WorkspaceArg,
    /// Only cases whose flow or name contains this text.
    #[arg(long)]
    filter: Option<String>,
}

pub(crate) fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    // Flow tests call no system (sources, sinks and acknowledgements are recorders or a
    // scripted page server): credentials need not be set to run them.
    let workspace = super::load_for_run(&args.workspace.workspace, EnvLookup::process().offline())?;
    let results = flowtest::run_all(&workspace, args.filter.as_deref());
    let mut failed = 0;
    for result in &results {
        if result.passed() {
            outln!("ok     {} :: {}", result.flow, result.name)?;
        } else {
            failed += 1;
            outln!(
                "FAILED {} :: {} ({})",
                result.flow,
                result.name,
                result.file
            )?;
            for failure in &result.failures {
                for line in failure.lines() {
                    outln!("    {line}")?;
                }
            }
        }
    }
    outln!(
        "{} case(s): {} passed, {failed} failed",
        results.len(),
        results.len() - failed
    )?;
    if results.is_empty() {
        outln!(
            "no test cases found under {}/tests",
            args.workspace.workspace.display()
        )?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
