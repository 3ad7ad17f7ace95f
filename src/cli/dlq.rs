//! `switchyard dlq`: list, show, replay, suppress and export dead letters. Every action that
//! changes a letter is recorded in the audit trail with the operator's name.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::WorkspaceArg;
use super::output::outln;
use crate::runtime::replay::{ReplayOutcome, replay};
use crate::spec::EnvLookup;
use crate::store::{DeadLetter, DeadLetterFilter, DeadLetterStatus, Store, StoreTarget};

/// Arguments of `switchyard dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters (open ones by default).
    List {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with its original record.
    Show {
        /// `[WORKSPACE] ID`: the workspace folder (default `.`) and the dead letter's ID.
        #[arg(required = true, num_args = 1..=2, value_names = ["WORKSPACE", "ID"])]
        target: Vec<String>,
    },
    /// Run dead letters through the current spec and deliver them.
    Replay {
        /// `[WORKSPACE] [ID...]`: the workspace folder (default `.`) and the IDs to replay; or
        /// select with the filters and `--all`.
        #[arg(value_names = ["WORKSPACE", "ID"])]
        target: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Replay every open letter matching the filters.
        #[arg(long)]
        all: bool,
        /// Who replays (default: $USER).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Accept that dead letters will not be delivered, saying why.
    Suppress {
        /// `[WORKSPACE] ID...`: the workspace folder (default `.`) and the IDs to suppress.
        #[arg(required = true, value_names = ["WORKSPACE", "ID"])]
        target: Vec<String>,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        /// Who suppresses (default: $USER).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Write dead letters as JSON lines `{"reason", "<key>", "raw"}`; an original that is not
    /// UTF-8 has `"raw": null` and its exact bytes in `raw_base64`.
    Export {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// Name of the record key field in the output.
        #[arg(long, default_value = "record_key")]
        key_field: String,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct FilterArgs {
    /// Only this flow.
    #[arg(long)]
    flow: Option<String>,
    /// Only this failure mode (for example `contract-violation`).
    #[arg(long)]
    failure: Option<String>,
    /// Only this status: open, replayed, suppressed, resolved (settled where it arose: a
    /// reconciliation variance no longer found) or all.
    #[arg(long, default_value = "open")]
    status: String,
    /// At most this many.
    #[arg(long)]
    limit: Option<usize>,
    /// State store: a SQLite file (`PATH` or `sqlite:PATH`) or a PostgreSQL schema
    /// (`postgres://HOST/DB?schema=NAME`). Default: the workspace's file.
    #[arg(long)]
    state: Option<String>,
}

pub(crate) fn run(args: DlqArgs) -> anyhow::Result<ExitCode> {
    super::tokio_runtime()?.block_on(run_async(args))
}

async fn run_async(args: DlqArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DlqCommand::List {
            workspace,
            filter,
            json,
        } => {
            let store = open_store(&workspace, filter.state.as_ref()).await?;
            let letters = store.dead_letters(&filter.to_filter()?).await?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&letters)?)?;
            } else {
                print_table(&mut out, &letters)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { target } => {
            let (workspace, ids) = split_target(&target)?;
            let [id] = ids[..] else {
                anyhow::bail!("give one dead letter ID to show");
            };
            let store = open_store(&workspace, None).await?;
            let letter = store.dead_letter(id).await?;
            let mut value = serde_json::to_value(&letter)?;
            let original = &letter.letter.record;
            match original.as_str() {
                Some(text) => {
                    if let Ok(record) = serde_json::from_str::<Value>(text) {
                        value["record"] = record;
                    }
                }
                // For people: the readable copy and a pointer to the exact bytes, rather than
                // a base64 blob.
                None => {
                    if let Value::Object(fields) = &mut value {
                        fields.shift_remove("record_base64");
                        fields.insert(
                            "record_note".into(),
                            Value::from(format!(
                                "original is not UTF-8; {} bytes, shown with U+FFFD in place of \
                                 the bytes that are not; use `switchyard dlq export` for the \
                                 exact bytes",
                                original.len()
                            )),
                        );
                    }
                }
            }
            outln!("{}", serde_json::to_string_pretty(&value)?)?;
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay {
            target,
            filter,
            all,
            actor,
        } => {
            let (workspace, ids) = split_target(&target)?;
            let store = open_store(&workspace, filter.state.as_ref()).await?;
            let ids = select(&store, ids, &filter, all).await?;
            let ws = super::load_for_run(&workspace.workspace, EnvLookup::process())?;
            let actor = super::actor(actor);
            {
                let mut failed = 0;
                for id in &ids {
                    match replay(&ws, &store, *id, &actor).await? {
                        ReplayOutcome::Delivered => outln!("#{id}: delivered")?,
                        ReplayOutcome::AlreadyResolved(status) => {
                            outln!("#{id}: already {}", status_name(status))?
                        }
                        ReplayOutcome::Failed(error) => {
                            failed += 1;
                            outln!("#{id}: still failing: {error}")?;
                        }
                    }
                }
                crate::runtime::alerts::drain(&store, std::time::Duration::from_secs(5)).await;
                outln!("{} replayed, {failed} still failing", ids.len() - failed)?;
                Ok(if failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        }
        DlqCommand::Suppress {
            target,
            reason,
            actor,
        } => {
            let (workspace, ids) = split_target(&target)?;
            if ids.is_empty() {
                anyhow::bail!("give the IDs of the dead letters to suppress");
            }
            let store = open_store(&workspace, None).await?;
            let actor = super::actor(actor);
            if reason.trim().is_empty() {
                anyhow::bail!("--reason must say why the records will not be delivered");
            }
            for id in ids {
                store
                    .resolve_dead_letter(id, DeadLetterStatus::Suppressed, &actor, &reason)
                    .await?;
                outln!("#{id}: suppressed by {actor}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Export {
            workspace,
            filter,
            key_field,
            out,
        } => {
            let store = open_store(&workspace, filter.state.as_ref()).await?;
            let letters = store.dead_letters(&filter.to_filter()?).await?;
            let mut writer: Box<dyn Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| path.display().to_string())?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            for letter in &letters {
                let key = letter.letter.record_key.as_deref().map(|k| {
                    k.parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::from(k))
                });
                let original = &letter.letter.record;
                let mut line = json!({
                    "reason": letter.letter.reason,
                    key_field.as_str(): key,
                    "raw": original.as_str(),
                });
                // JSON text cannot hold bytes that are not UTF-8, and a U+FFFD copy would
                // pass for the original: such an original goes out exactly, in base64.
                if original.as_str().is_none() {
                    line["raw_base64"] = Value::from(original.to_base64());
                }
                // `raw` is only the start of the original then: never pass it off as whole.
                if let Some(truncation) = &letter.letter.record_truncated {
                    line["raw_truncated"] = serde_json::to_value(truncation)?;
                }
                serde_json::to_writer(&mut writer, &line)?;
                writer.write_all(b"\n")?;
            }
            writer.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

impl FilterArgs {
    fn to_filter(&self) -> anyhow::Result<DeadLetterFilter> {
        let status = match self.status.as_str() {
            "all" => None,
            name => match DeadLetterStatus::from_name(name) {
                Some(status) => Some(status),
                None => anyhow::bail!(
                    "--status {name}: use open, replayed, suppressed, resolved or all"
                ),
            },
        };
        Ok(DeadLetterFilter {
            flow: self.flow.clone(),
            failure: self.failure.clone(),
            status,
            limit: self.limit,
        })
    }
}

async fn select(
    store: &Store,
    ids: Vec<i64>,
    filter: &FilterArgs,
    all: bool,
) -> anyhow::Result<Vec<i64>> {
    match (ids.is_empty(), all) {
        (false, false) => Ok(ids),
        (true, true) => Ok(store
            .dead_letters(&filter.to_filter()?)
            .await?
            .iter()
            .map(|l| l.id)
            .collect()),
        (false, true) => anyhow::bail!("give IDs or --all, not both"),
        (true, false) => anyhow::bail!("give the IDs to replay, or --all with filters"),
    }
}

/// Splits `[WORKSPACE] ID...`: a first argument that is not a number is the workspace.
fn split_target(target: &[String]) -> anyhow::Result<(WorkspaceArg, Vec<i64>)> {
    let (workspace, ids) = match target.split_first() {
        Some((first, rest)) if first.parse::<i64>().is_err() => (PathBuf::from(first), rest),
        _ => (PathBuf::from("."), target),
    };
    let ids = ids
        .iter()
        .map(|id| {
            id.parse::<i64>()
                .map_err(|_| anyhow::anyhow!("`{id}` is not a dead letter ID (a number)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((WorkspaceArg { workspace }, ids))
}

async fn open_store(workspace: &WorkspaceArg, state: Option<&String>) -> anyhow::Result<Store> {
    let from_workspace = match state {
        Some(_) => None,
        None => {
            // The store is named in the workspace file; read it without requiring every
            // `${ENV}` of the systems to be set (only those of `state:` itself): no system is
            // called with this load, so its credentials may be unset.
            let loaded = crate::spec::load_workspace(
                &workspace.workspace,
                &crate::spec::LoadOptions {
                    env: crate::spec::EnvLookup::process().offline(),
                    ..crate::spec::LoadOptions::default()
                },
            );
            let Some(ws) = loaded.workspace else {
                anyhow::bail!(
                    "{} has errors ({}), so its state store is not known; fix them \
                     (`switchyard validate {}`) or name the store with --state",
                    workspace.workspace.display(),
                    crate::spec::diagnostic::summary(&loaded.diagnostics),
                    workspace.workspace.display()
                );
            };
            Some(ws.state)
        }
    };
    let target = StoreTarget::choose(state.map(String::as_str), from_workspace.as_ref())?;
    // Inspecting dead letters must not leave an empty state file behind.
    if let Some(path) = target.sqlite_path().filter(|path| !path.exists()) {
        anyhow::bail!(
            "no state file at {}: no flow has run in this workspace yet",
            path.display()
        );
    }
    Ok(Store::open_target(&target).await?)
}

fn print_table(out: &mut impl Write, letters: &[DeadLetter]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>6}  {:<22} {:<20} {:<16} {:<18} {:<9} ERROR",
        "ID", "FLOW", "FAILURE", "KEY", "OWNER", "STATUS"
    )?;
    for l in letters {
        let error: String = l.letter.error.chars().take(60).collect();
        writeln!(
            out,
            "{:>6}  {:<22} {:<20} {:<16} {:<18} {:<9} {}",
            l.id,
            l.letter.flow,
            l.letter.failure,
            l.letter.record_key.as_deref().unwrap_or("-"),
            l.letter.owner,
            status_name(l.status),
            error
        )?;
    }
    writeln!(out, "{} dead letter(s)", letters.len())
}

fn status_name(status: DeadLetterStatus) -> &'static str {
    status.as_str()
}
