//! `switchyard serve`: the daemon (see [`crate::daemon`]); this file only maps arguments.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::output::errln;
use crate::daemon::{self, DaemonError, ServeConfig};

/// Arguments of `switchyard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    workspace: super::WorkspaceArg,
    /// Address of the HTTP listener (webhooks, admin API, metrics, health).
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// Reload when a file under the workspace changes (checked every second).
    #[arg(long)]
    watch: bool,
    /// State store: a SQLite file (`PATH` or `sqlite:PATH`) or a PostgreSQL schema
    /// (`postgres://HOST/DB?schema=NAME`). Default: the workspace's `state:`, else
    /// `.switchyard/state.db`.
    #[arg(long)]
    state: Option<String>,
    /// How long in-flight runs get to commit their batch at shutdown, as a duration.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// Start the simulated marketplace systems on loopback beside the daemon and point the
    /// workspace's `${MARKETPLACE_URL}`, `${STOREFRONT_URL}`, `${ALERTS_URL}` and `${OMS_URL}`
    /// at them: the whole reference workspace runs on one machine.
    #[arg(long)]
    sandbox: bool,
    /// Baskets of marketplace orders the sandbox creates and sends to the daemon's
    /// `/hooks/orders` as signed webhooks (one order per seller leg).
    #[arg(long, default_value_t = 200)]
    sandbox_orders: usize,
    /// Seconds the sandbox gives each order to be accepted before it auto-cancels it.
    #[arg(long, default_value_t = 60)]
    sandbox_ack_deadline: u64,
    /// Where the sandbox drops its settlement statement files (the workspace reads it as
    /// `${STATEMENT_DROP_DIR}`). Default: `switchyard-PORT-statement-drop` in the system's
    /// temporary folder, PORT being the listen port, so a restart re-drops into the same
    /// folder and the workspace folder is left as it was.
    #[arg(long, value_name = "DIR")]
    sandbox_statement_drop: Option<std::path::PathBuf>,
    /// Settlement lines the sandbox adds after its seeded billing cycles, in clean cycles
    /// (see `switchyard sandbox --settlement-lines`).
    #[arg(long, default_value_t = 0, value_name = "N", requires = "sandbox")]
    sandbox_settlement_lines: usize,
}

/// `TMP/switchyard-PORT-statement-drop`; with port 0 (any free port) the process ID stands
/// in, so two daemons never write the same `.part` file.
fn default_statement_drop(listen: SocketAddr) -> std::path::PathBuf {
    let tag = match listen.port() {
        0 => format!("pid{}", std::process::id()),
        port => port.to_string(),
    };
    std::env::temp_dir().join(format!("switchyard-{tag}-statement-drop"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::spec::parse_duration(text)
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = super::tokio_runtime()?;
    let mut env = crate::spec::EnvLookup::process();
    let sandbox = if args.sandbox {
        // The sandbox signs its order webhooks with the secret the workspace names.
        let secret = env
            .get("ORDERS_WEBHOOK_SECRET")
            .unwrap_or_else(|| "sandbox-secret".into());
        let config = crate::sandbox::SandboxConfig {
            orders: args.sandbox_orders,
            ack_deadline_secs: args.sandbox_ack_deadline,
            webhook_url: Some(format!("http://{}/hooks/orders", args.listen)),
            webhook_secret: secret.clone(),
            oauth: Some(super::realistic_oauth()),
            statement_drop: Some(crate::sandbox::StatementDropConfig::new(
                args.sandbox_statement_drop
                    .clone()
                    .unwrap_or_else(|| default_statement_drop(args.listen)),
            )),
            settlement_lines: args.sandbox_settlement_lines,
            ..crate::sandbox::SandboxConfig::default()
        };
        let sandbox = runtime.block_on(crate::sandbox::Sandbox::start(config))?;
        errln!("Sandbox listening on {}", sandbox.base_url());
        env = env.with("ORDERS_WEBHOOK_SECRET", secret);
        for (name, value) in sandbox.env() {
            env = env.with(name, value);
        }
        Some(sandbox)
    } else {
        None
    };
    // The daemon loads (and reports on) the workspace itself; this load only finds what to
    // say at start, so it stays quiet about diagnostics.
    let options = crate::spec::LoadOptions {
        strict: false,
        env: env.clone(),
    };
    if let Some(workspace) =
        crate::spec::load_workspace(&args.workspace.workspace, &options).workspace
    {
        super::run::say_start_notices(&workspace, |_| true);
    }
    let config = ServeConfig {
        root: args.workspace.workspace,
        listen: args.listen,
        watch: args.watch,
        state: args.state,
        shutdown_timeout: args.shutdown_timeout,
        admin_token: std::env::var("SWITCHYARD_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        alert_interval: Duration::from_secs(2),
        env,
    };
    let result = runtime.block_on(daemon::serve(config));
    if let Some(sandbox) = sandbox {
        super::report_sandbox(&sandbox);
        runtime.block_on(sandbox.shutdown());
    }
    // Runs cut off by the shutdown timeout are not waited for: their uncommitted batch is
    // replayed at the next start.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err @ DaemonError::Invalid { .. }) => {
            errln!("error: {err}");
            Ok(ExitCode::FAILURE)
        }
        Err(err) => Err(err.into()),
    }
}
