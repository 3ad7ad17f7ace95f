//! `switchyard status`: prints the flows table of a running daemon (`GET /admin/flows`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::output::{out, outln};
use crate::daemon::admin::FlowView;

/// Arguments of `switchyard status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8088")]
    url: String,
    /// The admin token.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the JSON as received.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    super::tokio_runtime()?.block_on(run_async(args))
}

async fn run_async(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = crate::connectors::http::client_builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let url = format!("{}/admin/flows", args.url.trim_end_matches('/'));
    let mut request = client.get(&url);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon at {url}"))?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}: {body}");
    }
    if args.json {
        outln!("{body}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let flows: Vec<FlowView> = serde_json::from_str(&body).context("unexpected answer")?;
    out!("{}", table(&flows))?;
    Ok(ExitCode::SUCCESS)
}

fn table(flows: &[FlowView]) -> String {
    let mut rows = vec![[
        "FLOW".to_owned(),
        "TRIGGER".into(),
        "STATE".into(),
        "LAST RUN".into(),
        "READ".into(),
        "DELIVERED".into(),
        "DEAD".into(),
        "DUPLICATES".into(),
    ]];
    for flow in flows {
        let report = flow.last_run.clone().unwrap_or_default();
        let state = if flow.paused {
            "paused"
        } else if flow.last_error.is_some() {
            "failing"
        } else {
            "active"
        };
        rows.push([
            flow.name.clone(),
            flow.trigger.clone(),
            state.into(),
            flow.last_run_at.clone().unwrap_or_else(|| "-".into()),
            report.read.to_string(),
            report.delivered.to_string(),
            report.dead_lettered.to_string(),
            report.duplicates.to_string(),
        ]);
    }
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    crate::spec::explain::aligned_table(&rows, false)
}
