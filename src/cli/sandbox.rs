//! `switchyard sandbox`: serves the simulated marketplace systems on loopback until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::sandbox::{SandboxConfig, StatementDropConfig, serve_until_ctrl_c};

/// Arguments of `switchyard sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// The loopback port to listen on; 0 picks a free one (the URLs are printed).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The seed of the generated marketplace data; the same seed gives the same offers.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How many offers the marketplace starts with, bad ones and duplicates included.
    #[arg(long, default_value_t = 1000)]
    pub offers: usize,
    /// How many customer baskets the marketplace starts with; each becomes one order per
    /// seller leg, waiting for acceptance from start-up.
    #[arg(long, default_value_t = 0)]
    pub orders: usize,
    /// Seconds an order may wait for acceptance before the marketplace auto-cancels it.
    #[arg(long, default_value_t = 60)]
    pub ack_deadline_secs: u64,
    /// Where to POST signed ORDER_CREATED webhooks at start-up.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// The HMAC-SHA256 secret webhooks are signed with.
    #[arg(long, default_value = "sandbox-secret")]
    pub webhook_secret: String,
    /// Milliseconds after receiving an order before the OMS's shipment appears.
    #[arg(long, default_value_t = 0)]
    pub ship_after_ms: u64,
    /// Drop each billing cycle's settlement statement as a CSV file into this folder (written
    /// as NAME.csv.part, then renamed to NAME.csv), plus one duplicate drop.
    #[arg(long, value_name = "DIR")]
    pub statement_drop: Option<PathBuf>,
    /// Milliseconds between two cycles' statement files.
    #[arg(long, default_value_t = 1000, requires = "statement_drop")]
    pub statement_interval_ms: u64,
    /// Milliseconds a statement file stays `.part` while it is written.
    #[arg(long, default_value_t = 200, requires = "statement_drop")]
    pub statement_upload_ms: u64,
    /// Settlement lines to add after the seeded billing cycles, in clean cycles of at most
    /// 5,000 lines (BC-2026-11-1, ...), each posted to the journal: a transaction log of many
    /// pages. At most 200000.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub settlement_lines: usize,
}

pub(crate) fn run(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    let config = SandboxConfig {
        port: args.port,
        seed: args.seed,
        offers: args.offers,
        orders: args.orders,
        ack_deadline_secs: args.ack_deadline_secs,
        webhook_url: args.webhook_url,
        webhook_secret: args.webhook_secret,
        ship_after_ms: args.ship_after_ms,
        oauth: Some(super::realistic_oauth()),
        statement_drop: args.statement_drop.map(|dir| StatementDropConfig {
            interval: Duration::from_millis(args.statement_interval_ms),
            upload: Duration::from_millis(args.statement_upload_ms),
            ..StatementDropConfig::new(dir)
        }),
        settlement_lines: args.settlement_lines,
    };
    super::tokio_runtime()?.block_on(serve_until_ctrl_c(config))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn sandbox_flags_parse_with_defaults() {
        let cli = Cli::try_parse_from(["switchyard", "sandbox", "--port", "8080", "--seed", "7"])
            .expect("valid flags");
        let Command::Sandbox(args) = cli.command else {
            panic!("expected the sandbox subcommand");
        };
        assert_eq!((args.port, args.seed, args.offers), (8080, 7, 1000));

        let cli = Cli::try_parse_from(["switchyard", "sandbox"]).expect("no flags");
        let Command::Sandbox(args) = cli.command else {
            panic!("expected the sandbox subcommand");
        };
        assert_eq!((args.port, args.seed, args.offers), (0, 42, 1000));
        assert_eq!(
            (args.orders, args.ack_deadline_secs, args.ship_after_ms),
            (0, 60, 0)
        );
        assert_eq!(args.webhook_url, None);
        assert_eq!(args.webhook_secret, "sandbox-secret");
        assert_eq!(args.statement_drop, None);
        assert_eq!(args.settlement_lines, 0);
    }

    #[test]
    fn sandbox_settlement_volume_flag_parses() {
        let cli = Cli::try_parse_from(["switchyard", "sandbox", "--settlement-lines", "8000"])
            .expect("valid flags");
        let Command::Sandbox(args) = cli.command else {
            panic!("expected the sandbox subcommand");
        };
        assert_eq!(args.settlement_lines, 8000);
    }

    #[test]
    fn sandbox_statement_drop_flags_parse() {
        let cli = Cli::try_parse_from([
            "switchyard",
            "sandbox",
            "--statement-drop",
            "/tmp/drop",
            "--statement-interval-ms",
            "50",
        ])
        .expect("valid flags");
        let Command::Sandbox(args) = cli.command else {
            panic!("expected the sandbox subcommand");
        };
        assert_eq!(args.statement_drop, Some(PathBuf::from("/tmp/drop")));
        assert_eq!(
            (args.statement_interval_ms, args.statement_upload_ms),
            (50, 200)
        );

        // Pacing without a folder is a mistake worth saying, not a silent no-op.
        let err = Cli::try_parse_from(["switchyard", "sandbox", "--statement-interval-ms", "5"])
            .expect_err("pacing needs a drop folder");
        assert!(err.to_string().contains("--statement-drop"), "{err}");
    }

    #[test]
    fn sandbox_order_flags_parse() {
        let cli = Cli::try_parse_from([
            "switchyard",
            "sandbox",
            "--orders",
            "50",
            "--ack-deadline-secs",
            "5",
            "--webhook-url",
            "http://127.0.0.1:9000/hooks/orders",
            "--webhook-secret",
            "s3cret",
            "--ship-after-ms",
            "250",
        ])
        .expect("valid flags");
        let Command::Sandbox(args) = cli.command else {
            panic!("expected the sandbox subcommand");
        };
        assert_eq!(
            (args.orders, args.ack_deadline_secs, args.ship_after_ms),
            (50, 5, 250)
        );
        assert_eq!(
            args.webhook_url.as_deref(),
            Some("http://127.0.0.1:9000/hooks/orders")
        );
        assert_eq!(args.webhook_secret, "s3cret");
    }
}
