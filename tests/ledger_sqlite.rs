//! The SQL connector's embedded fallback end to end (issue 9): a workspace whose ledger is
//! `url: ${LEDGER_URL}` with `fallback: { sqlite: ... }` validates without the variable, posts
//! into the SQLite file through a real `switchyard run`, says so once at start, posts nothing
//! twice on a rerun (state store lost included), survives `kill -9` in the middle of posting,
//! and refuses to go on into PostgreSQL from a checkpoint posted into SQLite. No server
//! needed: these always run.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;

const FLOW: &str = "post-journal";

/// A workspace posting `data/ledger.csv` (the settlement workload's ledger shape) into the
/// reference ledger table of `flows/sql/ledger.sql`, its ledger falling back to SQLite.
struct Workspace {
    root: PathBuf,
}

const WORKSPACE: &str = r#"version: 1
name: ledger-fallback
model: operator
systems:
  ledger-export:
    description: The finance ledger's journal export.
    file: { dir: data }
  ledger:
    description: The finance ledger.
    postgres: { url: "${LEDGER_URL}", fallback: { sqlite: .switchyard/ledger.db }, schema: sql/ledger.sql }
owners:
  finance-ops:
    contact: finance-ops@example.com
defaults:
  failure_owner: finance-ops
objects:
  journal_line:
    description: One journal line.
    key: [journal_id]
    contract: contracts/journal_line.json
    source_of_truth: ledger-export
    create: [ledger-export]
    consume: [ledger]
"#;

const POST_FLOW: &str = r#"flow: post-journal
description: Posts each journal line of the export into the ledger, exactly once.
object: journal_line
pattern: batch
latency: finance-close
from: { system: ledger-export, path: ledger.csv, format: csv }
to:
  system: ledger
  table: journal_lines
  key_column: idempotency_key
  columns: [journal_id, reference, billing_cycle_id, account, amount, currency, posted_at]
idempotency_key: "journal:{{journal_id}}"
map:
  journal_id: "{{journal_id}}"
  reference: "{{reference}}"
  billing_cycle_id: "{{billing_cycle_id}}"
  account: "{{account}}"
  amount: { from: /amount }
  currency: "{{currency}}"
  posted_at: "{{posted_at}}"
failures:
  contract-violation: { owner: finance-ops, action: repair, runbook: The export line is not a journal line. }
  sink-rejected: { owner: finance-ops, action: repair, runbook: The ledger refused the line. }
"#;

// The currency is only upper-case letters here, so a four-letter one reaches the ledger,
// whose CHECK refuses it: both dead-letter paths meet the crash.
const CONTRACT: &str = r#"{
  "type": "object",
  "required": ["journal_id", "reference", "account", "amount", "currency", "posted_at", "billing_cycle_id"],
  "properties": {
    "journal_id": { "type": "string", "minLength": 1 },
    "reference": { "type": "string" },
    "account": { "type": "string" },
    "amount": { "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$" },
    "currency": { "type": "string", "pattern": "^[A-Z]+$" },
    "posted_at": { "type": "string" },
    "billing_cycle_id": { "type": "string" }
  }
}"#;

impl Workspace {
    fn new(test: &str) -> Workspace {
        let root = std::env::temp_dir().join(format!(
            "switchyard-ledger-sqlite-{test}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["flows", "sql", "contracts", "data"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let write = |file: &str, text: &str| std::fs::write(root.join(file), text).unwrap();
        write("switchyard.yaml", WORKSPACE);
        write("flows/post-journal.yaml", POST_FLOW);
        write("contracts/journal_line.json", CONTRACT);
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("flows/sql/ledger.sql"),
            root.join("sql/ledger.sql"),
        )
        .unwrap();
        Workspace { root }
    }

    fn ledger_file(&self) -> PathBuf {
        self.root.join(".switchyard/ledger.db")
    }

    /// `switchyard ARGS` on the workspace, without `LEDGER_URL` (unless `env` sets it).
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(args)
            .env_remove("LEDGER_URL")
            .env("SWITCHYARD_LOG", "error")
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        command
    }

    /// `switchyard run` of the posting flow to its end: its JSON report and its stderr.
    fn run(&self, extra: &[&str]) -> (Value, String) {
        let root = self.root.to_str().unwrap();
        let mut args = vec!["run", root, FLOW, "--json"];
        args.extend(extra);
        let output = self.command(&args, &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{:?}\n{stderr}", output.status);
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "the report is not JSON ({err}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        (report, stderr)
    }

    /// Rows, distinct idempotency keys, and exact sums per currency of the ledger file.
    fn contents(&self) -> (usize, usize, BTreeMap<String, Decimal>) {
        let conn = rusqlite::Connection::open(self.ledger_file()).unwrap();
        let mut statement = conn
            .prepare("SELECT idempotency_key, currency, amount, typeof(amount) FROM journal_lines")
            .unwrap();
        let rows: Vec<(String, String, String, String)> = statement
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let keys: HashSet<&String> = rows.iter().map(|row| &row.0).collect();
        let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
        for (_, currency, amount, kind) in &rows {
            assert_eq!(kind, "text", "an amount stored as {kind}: {amount}");
            *sums.entry(currency.clone()).or_default() += Decimal::from_str(amount).unwrap();
        }
        (rows.len(), keys.len(), sums)
    }

    /// Rows in the ledger file (0 before it exists).
    fn rows(&self) -> usize {
        if !self.ledger_file().exists() {
            return 0;
        }
        let conn = rusqlite::Connection::open(self.ledger_file()).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.query_row("SELECT count(*) FROM journal_lines", [], |row| {
            row.get::<_, i64>(0)
        })
        .map_or(0, |count| count as usize)
    }

    /// The open dead letters of the flow: (record key, failure), sorted.
    fn dead_letters(&self) -> Vec<(String, String)> {
        let conn = rusqlite::Connection::open(self.root.join(".switchyard/state.db")).unwrap();
        let mut statement = conn
            .prepare("SELECT record_key, failure FROM dead_letters WHERE flow = ?1 ORDER BY 1")
            .unwrap();
        statement
            .query_map([FLOW], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Writes `count` ledger lines in the shape of `gen_settlement.py`'s ledger.csv; every
/// 997th has a decimal comma (the contract refuses it), every 4999th a four-letter currency
/// (the ledger's CHECK refuses it). Returns what a correct posting leaves: valid lines and
/// exact sums per currency.
fn generate(path: &Path, count: usize) -> (usize, BTreeMap<String, Decimal>) {
    use std::io::Write as _;
    let currencies = ["EUR", "GBP", "USD", "JPY", "BHD"];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        out,
        "journal_id,reference,account,amount,currency,posted_at,billing_cycle_id"
    )
    .unwrap();
    let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut valid = 0;
    for i in 0..count {
        let mut currency = currencies[i % currencies.len()].to_owned();
        let amount = match currency.as_str() {
            "JPY" => format!("{}", i % 90_000 + 1),
            "BHD" => format!("-{}.{:03}", i % 500, i % 1000),
            _ => format!("{}.{:02}", i % 9_000, i % 100),
        };
        let mut written = amount.clone();
        if i % 997 == 3 {
            written = "\"12,50\"".to_owned();
        } else if i % 4_999 == 11 {
            currency = "EURO".to_owned();
        } else {
            valid += 1;
            *sums.entry(currency.clone()).or_default() += Decimal::from_str(&amount).unwrap();
        }
        writeln!(
            out,
            "J{i:010},T{i:010},seller-payable,{written},{currency},2026-11-03T13:10:03Z,BC-2026-11-{}",
            i % 4 + 1
        )
        .unwrap();
    }
    out.flush().unwrap();
    (valid, sums)
}

#[test]
fn the_fallback_validates_posts_once_says_so_once_and_a_rerun_posts_nothing() {
    let ws = Workspace::new("fallback");
    let (valid, sums) = generate(&ws.root.join("data/ledger.csv"), 2_000);
    let root = ws.root.to_str().unwrap();

    // The unset LEDGER_URL is how the fallback is chosen: not a warning, even with --strict.
    for args in [vec!["validate", root], vec!["validate", "--strict", root]] {
        let output = ws.command(&args, &[]).output().unwrap();
        assert_eq!(
            (
                String::from_utf8_lossy(&output.stdout).as_ref(),
                output.status.code()
            ),
            ("0 errors, 0 warnings\n", Some(0)),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let (report, stderr) = ws.run(&[]);
    let notice = format!(
        "ledger: LEDGER_URL is not set; posting into the embedded SQLite ledger at {}; set \
         LEDGER_URL=postgres://... for PostgreSQL",
        ws.ledger_file().display()
    );
    assert_eq!(
        stderr.lines().filter(|line| *line == notice).count(),
        1,
        "the fallback is said once, as is: {stderr}"
    );
    assert_eq!(
        (
            &report["read"],
            &report["delivered"],
            &report["dead_lettered"]
        ),
        (
            &Value::from(2_000),
            &Value::from(valid),
            &Value::from(2_000 - valid)
        ),
        "{report}"
    );
    assert_eq!(ws.contents(), (valid, valid, sums.clone()));
    let letters = ws.dead_letters();
    let failures: HashSet<&str> = letters
        .iter()
        .map(|(_, failure)| failure.as_str())
        .collect();
    assert_eq!(
        failures,
        HashSet::from(["contract-violation", "sink-rejected"]),
        "{letters:?}"
    );

    // With the state store lost, every line is sent again: the ledger keeps what it has.
    let lost = ws.root.join("lost-state.db");
    let (report, _) = ws.run(&["--state", &format!("sqlite:{}", lost.display())]);
    assert_eq!(report["read"], Value::from(2_000), "{report}");
    assert_eq!(ws.contents(), (valid, valid, sums));

    // With LEDGER_URL set, the flow does not go on into PostgreSQL from a checkpoint posted
    // into SQLite (refused before connecting: the address here leads nowhere).
    let output = ws
        .command(
            &["run", root, FLOW],
            &[("LEDGER_URL", "postgres://app@127.0.0.1:9/ledger")],
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "this flow's checkpoint was posted into sqlite, and the system now points at \
             postgres (postgres://***@127.0.0.1:9/ledger)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("embedded SQLite"), "{stderr}");
}

#[test]
fn without_a_fallback_the_unset_url_is_still_reported() {
    let ws = Workspace::new("no-fallback");
    let path = ws.root.join("switchyard.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(" fallback: { sqlite: .switchyard/ledger.db },", "");
    std::fs::write(&path, text).unwrap();
    let output = ws
        .command(&["validate", ws.root.to_str().unwrap()], &[])
        .output()
        .unwrap();
    assert_eq!(
        (
            String::from_utf8_lossy(&output.stdout).as_ref(),
            output.status.code()
        ),
        (
            "switchyard.yaml:10:23: warning[W0701]: environment variable LEDGER_URL is not set\n  \
             = hint: export LEDGER_URL before running, or it expands to an empty string\n\
             0 errors, 1 warning\n",
            Some(0)
        )
    );
}

/// The fallback is said once per system whatever the log shows: `run` and `serve` (which
/// says it for every system of the workspace) at the default log level, where the log is on
/// stderr too, and with the log quietened to errors.
#[test]
fn the_fallback_is_said_once_by_run_and_serve_at_any_log_level() {
    let ws = Workspace::new("said-once");
    generate(&ws.root.join("data/ledger.csv"), 10);
    let root = ws.root.to_str().unwrap();
    let said = "ledger: LEDGER_URL is not set; posting into the embedded SQLite ledger";
    for level in ["info", "warn", "error"] {
        let output = ws
            .command(&["run", root, FLOW], &[("SWITCHYARD_LOG", level)])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert_eq!(
            stderr.matches(said).count(),
            1,
            "run, log {level}: {stderr}"
        );

        // A free loopback port, so the daemon can be asked whether it is up at any level.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = ws
            .command(
                &["serve", root, "--listen", &listen],
                &[("SWITCHYARD_LOG", level)],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "serve, log {level}: stopped"
            );
            assert!(
                Instant::now() < deadline,
                "serve, log {level}: not listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        let start = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            start.matches(said).count(),
            1,
            "serve, log {level}: {start}"
        );
    }
}

/// Polls the ledger file until it holds more than `rows` rows, failing past `timeout` or if
/// the run ends first.
fn wait_for_rows(ws: &Workspace, child: &mut std::process::Child, rows: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = ws.rows();
        if now > rows {
            return now;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed ({now} rows)"
        );
        assert!(Instant::now() < deadline, "the ledger stayed at {now} rows");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kill_dash_nine_while_posting_into_sqlite_then_rerun_posts_every_line_exactly_once() {
    let ws = Workspace::new("kill9");
    const LINES: usize = 50_000;
    let (valid, sums) = generate(&ws.root.join("data/ledger.csv"), LINES);
    let root = ws.root.to_str().unwrap();
    let batch = ["--batch-size", "2000"];
    let mut args = vec!["run", root, FLOW];
    args.extend(batch);
    let mut child = ws
        .command(&args, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first batch is posted; then the state store's write lock is taken from here, so
    // the next batch reaches the ledger but not the checkpoint, and the run is killed there.
    let first = wait_for_rows(&ws, &mut child, 0);
    let hold = rusqlite::Connection::open(ws.root.join(".switchyard/state.db")).unwrap();
    hold.execute_batch("BEGIN IMMEDIATE").unwrap();
    let before = wait_for_rows(&ws, &mut child, first);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    hold.execute_batch("ROLLBACK").unwrap();
    let before = before.max(ws.rows());
    assert!(
        before > 0 && before < valid,
        "killed mid-run ({before} of {valid} posted)"
    );

    let (report, _) = ws.run(&batch);
    let read = report["read"].as_u64().unwrap() as usize;
    // Lines the ledger had before the kill that the rerun read again: the batch posted but
    // not checkpointed.
    assert!(
        (before + read).saturating_sub(LINES) >= 1_000,
        "the rerun did not write the uncheckpointed batch again ({before} rows before, {read} read)"
    );
    assert_eq!(
        ws.contents(),
        (valid, valid, sums),
        "after kill -9 and a rerun: every valid line exactly once, amounts summing right"
    );
    let letters = ws.dead_letters();
    let keys: HashSet<&String> = letters.iter().map(|(key, _)| key).collect();
    assert_eq!(
        keys.len(),
        letters.len(),
        "a dead letter twice: {letters:?}"
    );
    assert_eq!(letters.len(), LINES - valid, "{letters:?}");
}
