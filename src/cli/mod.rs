//! The command line: one file per subcommand. This module only parses arguments, sets up
//! logging and maps results to exit codes: 0 success, 1 failure found (errors, failed tests),
//! 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use self::output::{err, errln};

mod diff;
mod dlq;
mod docs;
mod explain;
pub(crate) mod output;
mod reconcile;
mod run;
mod sandbox;
mod schema;
mod serve;
mod status;
mod test;
mod validate;

/// Declarative integration flows for marketplaces.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, in `RUST_LOG` syntax (for example `switchyard=debug`).
    #[arg(long, global = true, env = "SWITCHYARD_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a workspace and report every problem with its position.
    Validate(validate::ValidateArgs),
    /// Write the JSON Schemas of the spec files.
    Schema(schema::SchemaArgs),
    /// Report what a spec change means: semantic changes with risk levels.
    Diff(diff::DiffArgs),
    /// Write the evidence pack: ownership, flow diagrams, failure modes (HTML or Markdown).
    Docs(docs::DocsArgs),
    /// Print the ownership matrix and a summary of each flow.
    Explain(explain::ExplainArgs),
    /// Run one flow once.
    Run(run::RunArgs),
    /// Run the flow test cases declared under `tests/`.
    Test(test::TestArgs),
    /// Reconcile a statement against its ledger (a flow with `reconcile:`) and report.
    Reconcile(reconcile::ReconcileArgs),
    /// Inspect, replay or suppress dead letters.
    Dlq(dlq::DlqArgs),
    /// Start the simulated marketplace systems on loopback.
    Sandbox(sandbox::SandboxArgs),
    /// Run the daemon: every flow by its trigger, webhooks, admin API and metrics.
    Serve(serve::ServeArgs),
    /// Print the flows table of a running daemon.
    Status(status::StatusArgs),
}

/// The workspace folder argument shared by most subcommands.
#[derive(Debug, Clone, Args)]
pub struct WorkspaceArg {
    /// The workspace folder (the one holding `switchyard.yaml`).
    #[arg(default_value = ".")]
    pub workspace: PathBuf,
}

/// Parses the command line, runs the subcommand and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.log_format, &cli.log);
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Docs(args) => docs::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Run(args) => run::run(args),
        Command::Test(args) => test::run(args),
        Command::Reconcile(args) => reconcile::run(args),
        Command::Dlq(args) => dlq::run(args),
        Command::Sandbox(args) => sandbox::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Status(args) => status::run(args),
    };
    match result {
        Ok(code) => code,
        // The reader of stdout has gone (`| head`): it has what it wanted.
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // Errors that quote their cause in their own message are not repeated.
            let error: &(dyn std::error::Error + 'static) = err.as_ref();
            errln!("error: {}", crate::error_text::with_causes(error));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Builds the tokio runtime the async subcommands run on.
fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Loads a workspace for a command that executes it: warnings go to stderr, errors stop.
fn load_for_run(
    root: &std::path::Path,
    env: crate::spec::EnvLookup,
) -> anyhow::Result<crate::spec::model::Workspace> {
    let loaded =
        crate::spec::load_workspace(root, &crate::spec::LoadOptions { strict: false, env });
    let text = crate::spec::diagnostic::render_human(&loaded.diagnostics);
    if !text.is_empty() {
        err!("{text}");
    }
    loaded.workspace.ok_or_else(|| {
        anyhow::anyhow!(
            "{} has errors ({}); fix them first (`switchyard validate {}`)",
            root.display(),
            crate::spec::diagnostic::summary(&loaded.diagnostics),
            root.display()
        )
    })
}

/// The name recorded in the audit trail for operator actions.
fn actor(explicit: Option<String>) -> String {
    explicit
        .or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "operator".into())
}

/// Prints what the in-process sandbox received (`run --sandbox`, `serve --sandbox`).
fn report_sandbox(sandbox: &crate::sandbox::Sandbox) {
    let stats = sandbox.storefront_stats();
    errln!(
        "Sandbox storefront: {} records received, {} replays suppressed; {} alerts received",
        stats.records,
        stats.duplicates_suppressed,
        sandbox.alerts().len()
    );
    let orders = sandbox.orders_summary();
    if orders.legs > 0 {
        errln!(
            "Sandbox orders: {} legs, {} accepted before their deadline, {} auto-cancelled, \
             {} at the OMS, {} shipments confirmed",
            orders.legs,
            orders.accepted_before_deadline,
            orders.auto_cancelled,
            sandbox.oms_stats().received,
            orders.shipments
        );
    }
}

/// The sandbox marketplace's OAuth2 as `--sandbox` and `switchyard sandbox` run it: tokens
/// required on its API, each living 15 minutes, so a long session sees them renewed as a real
/// marketplace's are.
fn realistic_oauth() -> crate::sandbox::OAuthConfig {
    crate::sandbox::OAuthConfig {
        token_lifetime: std::time::Duration::from_secs(15 * 60),
        required: true,
        ..crate::sandbox::OAuthConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    /// Clap checks argument definitions only when a subcommand is parsed; this checks them
    /// all (an optional positional before a required one panics at run time otherwise).
    #[test]
    fn every_subcommand_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn dlq_takes_an_optional_workspace_before_ids() {
        for args in [
            &["switchyard", "dlq", "show", "flows", "1"][..],
            &["switchyard", "dlq", "show", "1"],
            &["switchyard", "dlq", "replay", "flows", "1", "2"],
            &["switchyard", "dlq", "suppress", "3", "--reason", "closed"],
            &["switchyard", "run", "flows", "offers-to-storefront"],
            &["switchyard", "run", "offers-to-storefront"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
    }
}
