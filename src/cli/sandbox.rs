//! `switchyard sandbox`: serves the simulated marketplace systems on loopback until Ctrl-C.

use std::process::ExitCode;

use clap::Args;

use crate::sandbox::{SandboxConfig, serve_until_ctrl_c};

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
}

pub(crate) fn run(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    let config = SandboxConfig {
        port: args.port,
        seed: args.seed,
        offers: args.offers,
    };
    super::tokio_runtime()?.block_on(serve_until_ctrl_c(config))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
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
    }
}
