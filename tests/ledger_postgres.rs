//! The reference example `examples/ledger-postgres` end to end on a real PostgreSQL (issue 7,
//! "done means"): the real `switchyard run` posts every valid order into the ledger table
//! once and dead-letters the bad ones with their owners; a rerun posts nothing new, even with
//! the state store lost; the journal reads back into a file; and `kill -9` in the middle of
//! posting, then a rerun, leaves every order in the ledger exactly once with the amounts
//! summing right. Mistakes in its PostgreSQL settings are reported at their line and column.
//!
//! Each test copies the example, gives its ledger a fresh schema of the test server and its
//! state the store `SWITCHYARD_TEST_STATE` picks ([`TestState`]); without a server each says
//! `SKIPPED` and passes, unless `SWITCHYARD_REQUIRE_POSTGRES=1`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;
use switchyard::store::{DeadLetterFilter, testing};

use crate::util::{StateHold, TestState, copy_dir};

const POST: &str = "orders-to-ledger";
const READ_BACK: &str = "ledger-to-close";

/// A private copy of the example whose ledger lives in a fresh schema of the test server.
struct Ledger {
    url: String,
    schema: String,
    root: PathBuf,
    client: tokio_postgres::Client,
    state: TestState,
}

impl Ledger {
    /// Copies the example for `test`, creates its ledger table (the example's own
    /// `sql/schema.sql`, in a schema of the test's), and attaches a fresh state store; `None`
    /// when PostgreSQL does not answer and is not required.
    async fn new(test: &str) -> Option<Ledger> {
        let url = testing::postgres_url();
        let schema = testing::unique_schema(&format!("ledger_{test}"));
        if !testing::fresh_schema(&format!("ledger_postgres::{test}"), &url, &schema).await {
            return None;
        }
        let root =
            std::env::temp_dir().join(format!("switchyard-ledger-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ledger-postgres"),
            &root,
        );
        let _ = std::fs::remove_file(root.join("out/journal.jsonl"));
        // The example's table is `ledger.journal`; here it is `<schema>.journal`.
        let in_schema = |text: String| {
            text.replace(
                "SCHEMA IF NOT EXISTS ledger;",
                &format!("SCHEMA IF NOT EXISTS {schema};"),
            )
            .replace("ledger.journal", &format!("{schema}.journal"))
        };
        for file in ["flows/orders-to-ledger.yaml", "flows/ledger-to-close.yaml"] {
            let path = root.join(file);
            let text = in_schema(std::fs::read_to_string(&path).unwrap());
            assert!(text.contains(&format!("{schema}.journal")), "{file}");
            std::fs::write(&path, text).unwrap();
        }
        let ddl = in_schema(std::fs::read_to_string(root.join("sql/schema.sql")).unwrap());
        let client = testing::raw_postgres(&url).await.unwrap();
        client.batch_execute(&ddl).await.unwrap();
        let state = TestState::attach(&format!("ledger_{test}"), &root);
        Some(Ledger {
            url,
            schema,
            root,
            client,
            state,
        })
    }

    /// `switchyard run` of `flow` on the copy, with `LEDGER_URL` set.
    fn command(&self, flow: &str, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(["run", self.root.to_str().unwrap(), flow, "--json"])
            .args(extra)
            .env("LEDGER_URL", &self.url)
            .env("SWITCHYARD_LOG", "error")
            .stdin(Stdio::null());
        command
    }

    /// Runs `flow` to its end and returns its report.
    async fn run(&self, flow: &str, extra: &[&str]) -> Value {
        let mut command = self.command(flow, extra);
        let output: Output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            output.status.success(),
            "{flow}: {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "{flow}: the report is not JSON ({err}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// What the ledger holds: rows, distinct idempotency keys, and the sum of amounts per
    /// currency (as PostgreSQL's exact numeric, read as text).
    async fn contents(&self) -> (i64, i64, BTreeMap<String, Decimal>) {
        let table = format!("{}.journal", self.schema);
        let row = self
            .client
            .query_one(
                &format!("SELECT count(*), count(DISTINCT idempotency_key) FROM {table}"),
                &[],
            )
            .await
            .unwrap();
        let sums = self
            .client
            .query(
                &format!("SELECT currency::text, sum(amount)::text FROM {table} GROUP BY 1"),
                &[],
            )
            .await
            .unwrap()
            .into_iter()
            .map(|row| {
                let sum: String = row.get(1);
                (row.get::<_, String>(0), Decimal::from_str(&sum).unwrap())
            })
            .collect();
        (row.get(0), row.get(1), sums)
    }

    /// Rows in the ledger.
    async fn rows(&self) -> i64 {
        self.client
            .query_one(
                &format!("SELECT count(*) FROM {}.journal", self.schema),
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The `(id, idempotency_key, posted_at)` of every row, in id order: a rerun that posted
    /// nothing leaves it as it was.
    async fn fingerprint(&self) -> Vec<(i64, String, String)> {
        self.client
            .query(
                &format!(
                    "SELECT id, idempotency_key, posted_at::text FROM {}.journal ORDER BY id",
                    self.schema
                ),
                &[],
            )
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect()
    }

    /// The open dead letters of the posting flow: `(record key, failure, owner)`, sorted.
    async fn dead_letters(&self) -> Vec<(String, String, String)> {
        let store = self.state.open().await;
        let mut letters: Vec<(String, String, String)> = store
            .dead_letters(&DeadLetterFilter {
                flow: Some(POST.to_owned()),
                ..DeadLetterFilter::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|l| {
                (
                    l.letter.record_key.unwrap_or_default(),
                    l.letter.failure,
                    l.letter.owner,
                )
            })
            .collect();
        letters.sort();
        letters
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // Kept when the test failed, to look at.
        if std::thread::panicking() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.root);
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(testing::drop_schema(&url, &schema))
        })
        .join();
    }
}

/// What a correct posting of `orders.jsonl` leaves in the ledger, worked out from the file
/// alone: orders that break the contract or that the ledger refuses are left out, an order
/// exported twice counts once. Returns the valid orders and the sums per currency.
fn expected(orders: &Path) -> (usize, BTreeMap<String, Decimal>) {
    let text = std::fs::read_to_string(orders).unwrap();
    let mut seen = HashSet::new();
    let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
    for line in text.lines() {
        let order: Value = serde_json::from_str(line).unwrap();
        let (Some(id), Some(currency), Some(total)) = (
            order["order_id"].as_str(),
            order["currency"].as_str(),
            order["total"].as_str(),
        ) else {
            continue;
        };
        // A decimal comma breaks the contract; a negative total breaks the ledger's CHECK.
        let Ok(total) = Decimal::from_str(total) else {
            continue;
        };
        if total <= Decimal::ZERO || !seen.insert(id.to_owned()) {
            continue;
        }
        *sums.entry(currency.to_owned()).or_default() += total;
    }
    (seen.len(), sums)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_posts_every_valid_order_once_and_a_rerun_posts_nothing() {
    let Some(ledger) = Ledger::new("run_and_rerun").await else {
        return;
    };
    let (valid, sums) = expected(&ledger.root.join("data/orders.jsonl"));
    assert_eq!(
        valid, 300,
        "the example's data changed; recount its edge cases"
    );

    let report = ledger.run(POST, &[]).await;
    assert_eq!(
        (
            &report["read"],
            &report["delivered"],
            &report["duplicates"],
            &report["dead_lettered"]
        ),
        (
            &Value::from(304),
            &Value::from(300),
            &Value::from(1),
            &Value::from(3)
        ),
        "{report}"
    );
    assert_eq!(ledger.contents().await, (300, 300, sums.clone()));
    let owners = |key: &str, failure: &str, owner: &str| {
        (key.to_owned(), failure.to_owned(), owner.to_owned())
    };
    assert_eq!(
        ledger.dead_letters().await,
        [
            owners("MKP-209001-A", "contract-violation", "marketplace-ops"),
            owners("MKP-209002-A", "contract-violation", "marketplace-ops"),
            owners("MKP-209003-A", "sink-rejected", "finance-ops"),
        ]
    );
    let posted = ledger.fingerprint().await;

    // A rerun resumes after the checkpoint: nothing to read, nothing posted.
    let report = ledger.run(POST, &[]).await;
    assert_eq!(
        (&report["read"], &report["delivered"]),
        (&Value::from(0), &Value::from(0))
    );
    assert_eq!(ledger.fingerprint().await, posted);

    // Even with the state store lost, every order sent again is already in the ledger: the
    // unique idempotency key keeps the rows as they were, ids and posting times included.
    let lost = ledger.root.join("lost-state.db");
    let report = ledger
        .run(POST, &["--state", &format!("sqlite:{}", lost.display())])
        .await;
    assert_eq!(report["read"], Value::from(304), "{report}");
    assert_eq!(ledger.fingerprint().await, posted);
    assert_eq!(ledger.contents().await, (300, 300, sums));

    // The PostgreSQL source reads the journal back, each line once, resuming on a rerun.
    let report = ledger.run(READ_BACK, &[]).await;
    assert_eq!(report["delivered"], Value::from(300), "{report}");
    let export = std::fs::read_to_string(ledger.root.join("out/journal.jsonl")).unwrap();
    let lines: Vec<Value> = export
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let exported: Vec<(i64, String, String)> = lines
        .iter()
        .map(|line| {
            (
                line["journal_id"].as_i64().unwrap(),
                line["reference"].as_str().unwrap().to_owned(),
                line["posted_at"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // In keyset order, which here is the order of posting.
    let keys = |rows: &[(i64, String, String)]| -> Vec<(i64, String)> {
        rows.iter().map(|(id, key, _)| (*id, key.clone())).collect()
    };
    assert_eq!(keys(&exported), keys(&posted));
    assert!(
        lines.iter().all(|line| line["amount"].is_string()),
        "{export}"
    );
    let report = ledger.run(READ_BACK, &[]).await;
    assert_eq!(report["read"], Value::from(0), "{report}");
    assert_eq!(
        std::fs::read_to_string(ledger.root.join("out/journal.jsonl")).unwrap(),
        export
    );
}

/// Writes `count` generated orders (a few of them bad) as the example's order drop.
fn generate_orders(path: &Path, count: usize) {
    use std::io::Write as _;
    let currencies = ["EUR", "GBP", "SEK", "PLN", "CHF", "USD", "JPY"];
    let channels = ["web", "app", "marketplace-api"];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..count {
        let currency = currencies[i % currencies.len()];
        let mut total = if currency == "JPY" {
            format!("{}", i % 90_000 + 100)
        } else {
            format!("{}.{:02}", i % 9_000 + 1, i % 100)
        };
        // A few orders the contract refuses (a decimal comma) and, rarely, one the ledger
        // refuses (a refund among payments), so both dead-letter paths meet the crash.
        if i % 10_007 == 5 {
            total = total.replace('.', ",");
            if !total.contains(',') {
                total.push_str(",50");
            }
        }
        if i % 50_021 == 7 {
            total = format!("-{total}");
        }
        let order = serde_json::json!({
            "order_id": format!("MKP-{i:07}-A"),
            "seller_id": format!("S-{}", i % 97),
            "channel": channels[i % channels.len()],
            "currency": currency,
            "total": total,
            "commission": "1.00",
            "paid_at": "2025-03-01T08:00:00Z",
        });
        writeln!(out, "{order}").unwrap();
    }
    out.flush().unwrap();
}

/// Polls the ledger every few milliseconds until it holds more than `rows` rows, failing past
/// `timeout` or if the run ends first.
async fn wait_for_rows(
    ledger: &Ledger,
    child: &mut std::process::Child,
    rows: i64,
    timeout: Duration,
) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let now = ledger.rows().await;
        if now > rows {
            return now;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed ({now} rows)"
        );
        assert!(
            Instant::now() < deadline,
            "the ledger stayed at {now} rows for {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_while_posting_then_rerun_posts_every_order_exactly_once() {
    let Some(ledger) = Ledger::new("kill9").await else {
        return;
    };
    // 25 batches: the kill lands after the second, with most of the drop still to post.
    const ORDERS: usize = 50_000;
    let orders = ledger.root.join("data/orders.jsonl");
    generate_orders(&orders, ORDERS);
    let (valid, sums) = expected(&orders);
    let batch = ["--batch-size", "2000"];

    let mut child = ledger
        .command(POST, &batch)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The run is under way (its first batch posted), then the state store is held: the next
    // batch reaches the ledger but not the checkpoint, and the run is killed right there.
    let first = wait_for_rows(&ledger, &mut child, 0, Duration::from_secs(120)).await;
    let hold = StateHold::take(ledger.state.target()).await;
    let before = wait_for_rows(&ledger, &mut child, first, Duration::from_secs(60)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    hold.release().await;
    let before = before.max(ledger.rows().await);
    assert!(
        before > 0 && (before as usize) < valid,
        "killed mid-run ({before} of {valid} posted)"
    );

    let report = ledger.run(POST, &batch).await;
    let read = report["read"].as_u64().unwrap();
    // Orders the ledger had before the kill that the rerun read again: the batch posted but
    // not checkpointed (less the few bad orders among those checkpointed).
    let replayed = (before as u64 + read).saturating_sub(ORDERS as u64);
    assert!(
        replayed >= 1_000,
        "the rerun did not write the uncheckpointed batch again ({before} rows before, {read} read)"
    );
    assert_eq!(
        ledger.contents().await,
        (valid as i64, valid as i64, sums),
        "after kill -9 and a rerun: every valid order exactly once, amounts summing right"
    );
    // Every bad order is one dead letter, however the crash cut its batch.
    let letters = ledger.dead_letters().await;
    let keys: HashSet<&String> = letters.iter().map(|(key, _, _)| key).collect();
    assert_eq!(
        keys.len(),
        letters.len(),
        "a dead letter twice: {letters:?}"
    );
    let bad: Vec<(String, String)> = letters
        .into_iter()
        .map(|(key, failure, _)| (key, failure))
        .collect();
    let expected_bad: Vec<(String, String)> = (0..ORDERS)
        .filter_map(|i| {
            let key = format!("MKP-{i:07}-A");
            if i % 10_007 == 5 {
                Some((key, "contract-violation".to_owned()))
            } else if i % 50_021 == 7 {
                Some((key, "sink-rejected".to_owned()))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(bad, expected_bad);
}

/// A patch of the example's copy: `from` replaced by `to` in `file`, which must hold it.
fn patch(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} lacks {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn mistakes_in_the_postgres_settings_are_reported_at_their_line_and_column() {
    // No database: validation never connects.
    let root = std::env::temp_dir().join(format!("switchyard-ledger-lint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ledger-postgres"),
        &root,
    );
    patch(
        &root,
        "switchyard.yaml",
        "statement_timeout: 30s",
        "statement_timeout: soon",
    );
    let post = "flows/orders-to-ledger.yaml";
    patch(
        &root,
        post,
        "key_column: idempotency_key",
        "key_column: idempotency key",
    );
    patch(
        &root,
        post,
        "columns: [entry_type,",
        "columns: [entry_type, entry_type,",
    );
    patch(
        &root,
        "flows/ledger-to-close.yaml",
        "key: id,",
        "key: posted_at,",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["validate", root.to_str().unwrap()])
        .env("LEDGER_URL", "postgres://app@ledger.internal:5432/finance")
        .output()
        .unwrap();
    assert_eq!(
        (
            String::from_utf8_lossy(&output.stdout).as_ref(),
            output.status.code()
        ),
        (
            "flows/ledger-to-close.yaml:9:72: error[E0005]: key names the cursor column; name a \
             column unique among rows, such as id\n\
             flows/orders-to-ledger.yaml:11:15: error[E0005]: key_column: \"idempotency key\" is \
             not a plain identifier; use letters, digits, _ and $, starting with a letter or _\n\
             flows/orders-to-ledger.yaml:12:25: error[E0005]: columns lists \"entry_type\" twice\n\
             switchyard.yaml:16:58: error[E0403]: statement_timeout: invalid duration \"soon\": \
             write a number and a unit, such as 30s, 15m, 1h30m or 250ms\n  \
             = hint: durations look like 30s, 15m, 1h30m, 250ms or PT15M\n\
             4 errors, 0 warnings\n",
            Some(1)
        ),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&root);
}
