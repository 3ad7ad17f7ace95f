//! `kill -9` during the reference workspace's settlement posting, then a rerun (issue 9, "done
//! means": "every ledger line exactly once; rerunning a reconciliation gives the same
//! report"), on the embedded SQLite ledger and on PostgreSQL.
//!
//! The sandbox serves the seeded billing cycles plus clean volume cycles (`settlement_lines`),
//! so the transaction log is thousands of lines over several pages. The real `switchyard run`
//! of `settlement-lines-to-ledger` is killed with SIGKILL three times at different points (its
//! first page posted; a few pages on, after a pause; and with the state store held, so a page
//! reaches the ledger but not its checkpoint), and `journal-to-ledger` once with its one batch
//! in the ledger but not in the state store; each then runs to completion. Both ledger tables
//! must then hold every line of the sandbox exactly once, as served (counts, idempotency keys,
//! every column, sums per currency), with no dead letter; and `switchyard reconcile` run twice
//! must write the same report, whose variances are exactly the seeded ones.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;
use switchyard::sandbox::{Sandbox, SandboxConfig};
use switchyard::store::DeadLetterFilter;

use crate::settlement::{
    Run, postgres_ledger, read_lines, reference_workspace, reported_variances,
    seeded_ledger_variances,
};
use crate::util::{StateHold, TestState};

/// Volume lines beyond the seeded cycles: about nine pages of the flow's 1,000.
const VOLUME: usize = 8_000;
const STATEMENT_FLOW: &str = "settlement-lines-to-ledger";
const JOURNAL_FLOW: &str = "journal-to-ledger";
/// The columns compared with what the sandbox served, in this order (amounts as exact
/// decimals, whatever scale the backend keeps).
const STATEMENT_COLUMNS: [&str; 13] = [
    "transaction_id",
    "idempotency_key",
    "billing_cycle_id",
    "shop_id",
    "type",
    "order_id",
    "order_line_id",
    "amount",
    "currency",
    "date_created",
    "accounting_document_number",
    "payment_state",
    "reason",
];
const JOURNAL_COLUMNS: [&str; 8] = [
    "journal_id",
    "idempotency_key",
    "reference",
    "account",
    "amount",
    "currency",
    "posted_at",
    "billing_cycle_id",
];
/// How long any one wait of this test may take before it fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// The finance ledger of one test, read from outside the runs.
enum Ledger {
    Sqlite(PathBuf),
    Postgres {
        client: tokio_postgres::Client,
        schema: String,
    },
}

impl Ledger {
    /// Rows in `table`.
    async fn count(&self, table: &str) -> usize {
        match self {
            Ledger::Sqlite(path) => {
                if !path.exists() {
                    return 0;
                }
                let conn = rusqlite::Connection::open(path).unwrap();
                let exists: bool = conn
                    .query_row(
                        "SELECT count(*) > 0 FROM sqlite_master WHERE name = ?1",
                        [table],
                        |row| row.get(0),
                    )
                    .unwrap();
                if !exists {
                    return 0;
                }
                conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get::<_, i64>(0)
                })
                .unwrap() as usize
            }
            Ledger::Postgres { client, schema } => {
                let sql = format!("SELECT count(*) FROM {schema}.{table}");
                match client.query_one(&sql, &[]).await {
                    Ok(row) => row.get::<_, i64>(0) as usize,
                    // Not created yet: the flow creates its table when it opens.
                    Err(_) => 0,
                }
            }
        }
    }

    /// Every row of `table`, `columns` as text (null as empty), amounts normalised, sorted.
    async fn rows(&self, table: &str, columns: &[&str]) -> Vec<Vec<String>> {
        let mut rows: Vec<Vec<String>> = match self {
            Ledger::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let list: Vec<String> = columns
                    .iter()
                    .map(|c| format!("CAST({c} AS TEXT)"))
                    .collect();
                let mut query = conn
                    .prepare(&format!("SELECT {} FROM {table}", list.join(", ")))
                    .unwrap();
                query
                    .query_map([], |row| {
                        (0..columns.len())
                            .map(|i| row.get::<_, Option<String>>(i))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .unwrap()
                    .map(|row| row.unwrap().into_iter().map(Option::unwrap_or_default))
                    .map(Iterator::collect)
                    .collect()
            }
            Ledger::Postgres { client, schema } => {
                let list: Vec<String> = columns
                    .iter()
                    .map(|&c| match c {
                        // The sandbox writes RFC 3339 in UTC, to the second.
                        "posted_at" => "to_char(posted_at AT TIME ZONE 'UTC', \
                             'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                            .to_owned(),
                        c => format!("{c}::text"),
                    })
                    .collect();
                let sql = format!("SELECT {} FROM {schema}.{table}", list.join(", "));
                client
                    .query(&sql, &[])
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| {
                        (0..columns.len())
                            .map(|i| row.get::<_, Option<String>>(i).unwrap_or_default())
                            .collect()
                    })
                    .collect()
            }
        };
        let amount = columns.iter().position(|c| *c == "amount");
        for row in &mut rows {
            if let Some(at) = amount {
                row[at] = exact(&row[at]);
            }
        }
        rows.sort();
        rows
    }
}

/// A decimal amount as text without trailing zeros (`-12.3000` and `-12.30` are `-12.3`).
fn exact(amount: &str) -> String {
    Decimal::from_str_exact(amount)
        .unwrap_or_else(|err| panic!("{amount:?} is not a decimal: {err}"))
        .normalize()
        .to_string()
}

/// Served records as rows of `columns` (the idempotency key is the record's `key` field;
/// null as empty, as the flows map it), sorted.
fn served_rows(records: &[Value], columns: &[&str], key: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = records
        .iter()
        .map(|record| {
            columns
                .iter()
                .map(|&c| {
                    let field = if c == "idempotency_key" { key } else { c };
                    let text = record[field].as_str().unwrap_or_default();
                    if c == "amount" {
                        exact(text)
                    } else {
                        text.to_owned()
                    }
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

/// Exact sums per currency of rows of `columns` (as `served_rows` gives them), split by the
/// column `by` (the line type, the account): the whole log sums to zero per currency, its
/// payouts settling it, so a sum per currency alone would prove little.
fn sums(rows: &[Vec<String>], columns: &[&str], by: &str) -> BTreeMap<(String, String), Decimal> {
    let at = |name: &str| columns.iter().position(|c| *c == name).unwrap();
    let (amount, currency, by) = (at("amount"), at("currency"), at(by));
    let mut sums = BTreeMap::new();
    for row in rows {
        *sums
            .entry((row[currency].clone(), row[by].clone()))
            .or_default() += Decimal::from_str(&row[amount]).unwrap();
    }
    sums
}

/// `switchyard run . FLOW` started in the background, its output discarded.
fn spawn(run: &Run, flow: &str) -> Child {
    run.command(&["run", ".", flow])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `switchyard ARGS` to its end, killed and failed past [`PATIENCE`]: stdout, stderr, exit
/// code.
fn switchyard(run: &Run, args: &[&str]) -> (String, String, i32) {
    let mut child = run
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read beside the wait, so a full pipe never stalls the process.
    let read = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = from.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("switchyard {args:?} did not end within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        stdout.join().unwrap(),
        stderr.join().unwrap(),
        status.code().unwrap_or(-1),
    )
}

/// `switchyard run . FLOW --json` to its end: the run report.
fn run_to_end(run: &Run, flow: &str) -> Value {
    let (stdout, stderr, code) = switchyard(run, &["run", ".", flow, "--json"]);
    assert_eq!(code, 0, "run {flow}: {stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}: {stdout}"))
}

/// Polls `table` every few milliseconds until it holds more than `rows` rows; fails past
/// [`PATIENCE`] or if the run ends first (a kill must land while it posts).
async fn wait_for_rows(ledger: &Ledger, table: &str, child: &mut Child, rows: usize) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = ledger.count(table).await;
        if now > rows {
            return now;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed ({table}: {now} rows)"
        );
        assert!(
            Instant::now() < deadline,
            "{table} stayed at {now} rows for {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// SIGKILL, no chance to clean up; the run must not have ended on its own before.
fn kill(mut child: Child, what: &str) {
    assert!(
        child.try_wait().unwrap().is_none(),
        "{what}: the run ended before it was killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Whether the state store `target` holds a checkpoint of `flow` (a run commits one when its
/// output opens, before its first batch).
async fn has_checkpoint(target: &str, flow: &str) -> bool {
    if let Some(path) = target.strip_prefix("sqlite:") {
        let conn = rusqlite::Connection::open(path).unwrap();
        return conn
            .query_row(
                "SELECT count(*) FROM checkpoints WHERE flow = ?1",
                [flow],
                |row| row.get::<_, i64>(0),
            )
            .unwrap_or(0)
            > 0;
    }
    let (url, schema) = target.split_once("?schema=").unwrap();
    let client = switchyard::store::testing::raw_postgres(url).await.unwrap();
    let sql = format!("SELECT count(*) FROM \"{schema}\".checkpoints WHERE flow = $1");
    client
        .query_one(&sql, &[&flow])
        .await
        .map(|row| row.get::<_, i64>(0) > 0)
        .unwrap_or(false)
}

async fn kill_while_posting_then_rerun(test: &str, postgres: Option<(String, String)>) {
    let base = std::env::temp_dir().join(format!("switchyard-kill-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let sandbox = Sandbox::start(SandboxConfig {
        settlement_lines: VOLUME,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let root = base.join("ws");
    reference_workspace(&root, postgres.as_ref());
    let state = TestState::attach(&format!("settlement_kill_{test}"), &root);
    let mut env = sandbox.env();
    let ledger = match &postgres {
        Some((url, schema)) => {
            env.push(("LEDGER_URL".into(), url.clone()));
            Ledger::Postgres {
                client: switchyard::store::testing::raw_postgres(url).await.unwrap(),
                schema: schema.clone(),
            }
        }
        None => Ledger::Sqlite(root.join(".switchyard/ledger.db")),
    };
    let run = Run {
        root: root.clone(),
        env,
    };
    let log = sandbox.settlement_log();
    let journal = sandbox.settlement_journal();
    assert!(log.len() > VOLUME && journal.len() > VOLUME);

    // The transaction log, killed three times while it posts.
    // 1: as soon as its first page is in the ledger.
    let mut child = spawn(&run, STATEMENT_FLOW);
    let first = wait_for_rows(&ledger, "statement_lines", &mut child, 0).await;
    kill(child, "kill 1");
    // 2: two pages later, after a pause, wherever the run then is.
    let mut child = spawn(&run, STATEMENT_FLOW);
    let now = wait_for_rows(&ledger, "statement_lines", &mut child, first + 1_000).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    kill(child, "kill 2");
    // 3: with the state store held once the run posts, so the next page reaches the ledger
    // but not its checkpoint: the window a crash must not turn into a line posted twice.
    let before = ledger.count("statement_lines").await.max(now);
    let mut child = spawn(&run, STATEMENT_FLOW);
    let posting = wait_for_rows(&ledger, "statement_lines", &mut child, before).await;
    let hold = StateHold::take(state.target()).await;
    let held = wait_for_rows(&ledger, "statement_lines", &mut child, posting).await;
    kill(child, "kill 3");
    hold.release().await;
    let killed_at = ledger.count("statement_lines").await.max(held);
    assert!(
        killed_at < log.len(),
        "killed mid-log ({killed_at} of {} lines)",
        log.len()
    );
    let report = run_to_end(&run, STATEMENT_FLOW);
    let delivered = report["delivered"].as_u64().unwrap() as usize;
    // The flow pages the whole log on every run (it keeps no cursor): what is checkpointed
    // is skipped as processed, the rest goes to the ledger again. What the rerun wrote beyond
    // the lines new to the ledger was already there: at least the page posted while the
    // state store was held, written again and taken once.
    assert!(
        (delivered + killed_at).saturating_sub(log.len()) >= held - posting,
        "the rerun did not write the uncheckpointed page again ({killed_at} lines posted, \
         {delivered} delivered, {} in the log): {report}",
        log.len()
    );

    // The journal: one batch, posted in several transactions, killed once some of it is in
    // the ledger and none of it in the state store.
    let mut child = spawn(&run, JOURNAL_FLOW);
    let deadline = Instant::now() + PATIENCE;
    while !has_checkpoint(state.target(), JOURNAL_FLOW).await {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the journal run ended before it was held"
        );
        assert!(Instant::now() < deadline, "the journal run never opened");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let hold = StateHold::take(state.target()).await;
    wait_for_rows(&ledger, "journal_lines", &mut child, 0).await;
    kill(child, "kill 4");
    hold.release().await;
    let posted = ledger.count("journal_lines").await;
    // Its rerun reads the journal again and, with nothing of it recorded as processed, writes
    // every line, those already posted included.
    let report = run_to_end(&run, JOURNAL_FLOW);
    assert_eq!(
        (report["read"].as_u64(), report["delivered"].as_u64()),
        (Some(journal.len() as u64), Some(journal.len() as u64)),
        "the rerun writes the whole journal again ({posted} lines were posted): {report}"
    );
    let report = run_to_end(&run, JOURNAL_FLOW);
    assert_eq!(report["delivered"], 0, "{report}");

    // Every ledger line exactly once, as served.
    for (table, columns, served, key, by) in [
        (
            "statement_lines",
            &STATEMENT_COLUMNS[..],
            &log,
            "transaction_id",
            "type",
        ),
        (
            "journal_lines",
            &JOURNAL_COLUMNS[..],
            &journal,
            "journal_id",
            "account",
        ),
    ] {
        let rows = ledger.rows(table, columns).await;
        let keys: BTreeSet<&String> = rows.iter().map(|row| &row[1]).collect();
        assert_eq!(
            (rows.len(), keys.len()),
            (served.len(), served.len()),
            "{table}: rows and distinct idempotency keys after kill -9 and a rerun"
        );
        let want = served_rows(served, columns, key);
        assert_eq!(
            sums(&rows, columns, by),
            sums(&want, columns, by),
            "{table}: sums per currency and {by}"
        );
        let missing: Vec<&Vec<String>> = want.iter().filter(|r| !rows.contains(r)).collect();
        assert!(
            missing.is_empty(),
            "{table}: {} served lines not in the ledger as served, first {:?}",
            missing.len(),
            missing.first()
        );
        assert_eq!(rows, want, "{table}");
    }
    let store = state.open().await;
    for flow in [STATEMENT_FLOW, JOURNAL_FLOW] {
        let letters = store
            .dead_letters(&DeadLetterFilter {
                flow: Some(flow.to_owned()),
                ..DeadLetterFilter::default()
            })
            .await
            .unwrap();
        assert!(
            letters.is_empty(),
            "{flow}: {} dead letter(s), first {:?}",
            letters.len(),
            letters
                .first()
                .map(|l| (&l.letter.failure, &l.letter.error))
        );
    }

    // The reconciliation, twice: the same report, its variances exactly the seeded ones and
    // every other cycle tying out.
    let reports = [base.join("report-1"), base.join("report-2")];
    let mut summaries = Vec::new();
    for dir in &reports {
        let (stdout, stderr, code) = switchyard(
            &run,
            &[
                "reconcile",
                ".",
                "settlement-reconciliation",
                "--out",
                dir.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        summaries.push(stdout);
    }
    let expected = sandbox.settlement_expected();
    let want = seeded_ledger_variances(&expected);
    assert_eq!(
        reported_variances(&read_lines(&reports[0].join("variances.jsonl"))),
        want,
        "variances differ from the sandbox's seeded defects"
    );
    let letters = want.len();
    assert!(
        summaries[0].contains(&format!("dead letters: {letters} new, 0 already recorded")),
        "{}",
        summaries[0]
    );
    assert!(
        summaries[1].contains(&format!("dead letters: 0 new, {letters} already recorded")),
        "{}",
        summaries[1]
    );
    for file in ["variances.jsonl", "totals.jsonl", "report.csv", "report.md"] {
        let [one, two] = reports
            .each_ref()
            .map(|dir| std::fs::read_to_string(dir.join(file)).unwrap());
        if file == "report.md" {
            // The same report; only the line saying what this run did to the dead letters
            // differs (the first recorded them, the second found them recorded).
            let said = |text: &str, line: &str| text.replace(line, "Dead letters: ...");
            assert_eq!(
                said(
                    &one,
                    &format!("Dead letters: {letters} new, 0 already recorded")
                ),
                said(
                    &two,
                    &format!("Dead letters: 0 new, {letters} already recorded")
                ),
                "report.md differs between two reconciliations"
            );
        } else {
            assert!(one == two, "{file} differs between two reconciliations");
        }
    }
    let totals = read_lines(&reports[0].join("totals.jsonl"));
    let stated: BTreeMap<(String, String), [String; 3]> = expected["cycles"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|cycle| {
            let id = cycle["billing_cycle_id"].as_str().unwrap().to_owned();
            cycle["totals"].as_array().unwrap().iter().map(move |t| {
                (
                    (id.clone(), t["currency"].as_str().unwrap().to_owned()),
                    ["statement_total", "ledger_total", "variance"]
                        .map(|k| t[k].as_str().unwrap().to_owned()),
                )
            })
        })
        .collect();
    let reported: BTreeMap<(String, String), [String; 3]> = totals
        .iter()
        .map(|t| {
            (
                (
                    t["billing_cycle_id"].as_str().unwrap().to_owned(),
                    t["currency"].as_str().unwrap().to_owned(),
                ),
                ["statement_total", "ledger_total", "variance"]
                    .map(|k| t[k].as_str().unwrap().to_owned()),
            )
        })
        .collect();
    // As written too: in each currency's minor units, whatever scale the ledger keeps.
    assert_eq!(reported, stated, "totals per cycle and currency");
    for t in totals.iter().filter(|t| {
        t["billing_cycle_id"]
            .as_str()
            .unwrap()
            .starts_with("BC-2026-11-")
    }) {
        assert_eq!(t["ties_out"], true, "a volume cycle: {t}");
    }

    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_while_posting_settlement_into_the_embedded_ledger_then_rerun() {
    kill_while_posting_then_rerun("sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_while_posting_settlement_into_postgres_then_rerun() {
    let Some(ledger) = postgres_ledger("settlement_kill::on_postgres").await else {
        return;
    };
    kill_while_posting_then_rerun("postgres", Some(ledger.clone())).await;
    // Kept when the test failed, to look at.
    let (url, schema) = ledger;
    let _ = switchyard::store::testing::drop_schema(&url, &schema).await;
}
